import marimo

__generated_with = "0.25.2"
app = marimo.App(width="medium")


@app.cell
def _():
    import marimo as mo

    from llmlab import Lab

    return Lab, mo


@app.cell
def _(mo):
    mo.md(
        """
        # llmlab in marimo

        Every `Lab` method returns a result that marimo shows as its **live view**: the same
        views as `%llm` in Jupyter, running on this notebook's kernel (switch layers and
        heads, move the sliders, press Run). Everything runs offline on the embedded default
        model, SmolLM2-135M-Instruct (`marimo run examples/marimo_quickstart.py -- --model
        tiny:llama` for a random test model that loads in a second).
        """
    )
    return


@app.cell
def _(Lab, mo):
    lab = Lab()
    lm = lab.load(mo.cli_args().get("model") or "default")
    mo.md(f"loaded **{lm.name}**")
    return (lab,)


@app.cell
def _(lab):
    answer = lab.generate("What is the capital of France?", max_new_tokens=24)
    answer
    return


@app.cell
def _(lab):
    # Sampling reshapes the next-token distribution: temperature, top-k, top-p sliders.
    lab.next_token("The capital of France is")
    return


@app.cell
def _(lab):
    # Every layer's and head's attention: head view, layer x head grid, per-head table.
    lab.attention("The cat sat on the mat. The cat")
    return


@app.cell
def _(lab):
    # Logit lens: what each layer would predict, read through the final norm.
    lab.lens("The capital of France is")
    return


@app.cell
def _(lab):
    # Quality against cost for a few configurations (greedy, 3 timed passes each).
    lab.tradeoff(
        "baseline,kv=off",
        ["Name a colour.", "What is 2+2?"],
        max_new_tokens=8,
        warmup=0,
        axes=("tpot", "top1"),
    )
    return


@app.cell
def _(lab):
    # The acceleration panel: pick toggles, press Run, compare with the baseline.
    lab.accel(max_new_tokens=16)
    return


@app.cell
def _(mo):
    mo.md(
        """
        ## Offline pages

        marimo's own HTML export (`marimo export html`) loads marimo's front end from a CDN
        and keeps no kernel, so its live views cannot work offline. For a page that opens
        with no network and keeps every view interactive, write the same steps as a Jupyter
        notebook and run `python -m llmlab.report NOTEBOOK.ipynb --execute`, or save one
        result with `result.save_html("page.html")`.
        """
    )
    return


if __name__ == "__main__":
    app.run()
