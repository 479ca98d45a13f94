"""The state behind ``%llm accel``: the toggles a model can use here, and the runs made so far.

The live panel (``llmlab.widgets.accel``) renders it and calls :meth:`AccelPanelState.run`;
``to_html`` is the static view exported notebooks show.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from llmlab.accel.registry import ACCELERATIONS, DRAFT_PREFIX, parse_config
from llmlab.html import card, esc
from llmlab.results import Result

if TYPE_CHECKING:
    from llmlab.generation.result import GenerationResult
    from llmlab.models.loaded import LoadedModel

DEFAULT_PROMPT = (
    "Summarise in one sentence: The Eiffel Tower is a wrought-iron lattice tower in Paris. "
    "It was designed by the engineer Gustave Eiffel's company and built from 1887 to 1889 "
    "as the entrance to the 1889 World's Fair. The Eiffel Tower is 330 metres tall."
)
#: Runs shown side by side: the latest ones, plus the baseline run they are compared with.
KEPT_RUNS = 2


def _draft_values(lm: LoadedModel, models: dict[str, LoadedModel]) -> list[dict[str, Any]]:
    """One ``draft:NAME`` toggle per other loaded model, greyed where it cannot draft."""
    from llmlab.targets import MODEL, resolve

    values = []
    for name, other in models.items():
        if not other.capabilities.internals or other.model is lm.model:
            continue  # a served model cannot draft: its weights are on the server
        ok, why = True, ""
        if not resolve(name, lm, models=models, kinds=(MODEL,)).tokenizer_compatible(lm):
            ok, why = False, f"{name}'s tokenizer differs from {lm.name}'s"
        elif other.device != lm.device:
            ok, why = False, f"{name} is on {other.device}, {lm.name} on {lm.device}"
        values.append(
            {
                "value": f"{DRAFT_PREFIX}{name}",
                "ok": ok,
                "why": why,
                "help": f"draft with {name} ({other.n_params / 1e6:.0f} M params)",
            }
        )
    if not values:
        values.append(
            {
                "value": f"{DRAFT_PREFIX}NAME",
                "ok": False,
                "why": "load a smaller model with the same tokenizer to draft with it",
                "help": "draft with another loaded model",
            }
        )
    return values


def controls(lm: LoadedModel, models: dict[str, LoadedModel]) -> list[dict[str, Any]]:
    """Per acceleration: its values, whether each can run for ``lm`` here and why not."""
    rows = []
    for acc in ACCELERATIONS.values():
        values = []
        for value in acc.values:
            if value.startswith(DRAFT_PREFIX):
                values.extend(_draft_values(lm, models))
                continue
            ok, why = acc.value_available(lm, value)
            values.append(
                {"value": value, "ok": ok, "why": why, "help": acc.value_help.get(value, "")}
            )
        for v in values:
            v["preserving"] = acc.preserves(v["value"])
        rows.append(
            {
                "name": acc.name,
                "changes": acc.changes,
                "applied": acc.applied,
                "default": acc.default,
                "values": values,
            }
        )
    return rows


def warmup_note(extra: dict[str, Any]) -> str:
    """What was done before a panel run so that its timing is not a cold start's."""
    if "warmup_s" in extra:
        return "warmed up once before this run (a short generation), not timed"
    if "first_call_compile_s" in extra:
        return "compiled by a first call before this run, not timed"
    return "already warm: this configuration ran earlier in this session"


def run_record(result: GenerationResult, label: str, preserving: bool) -> dict[str, Any]:
    """What the panel shows of one run (plain JSON)."""
    from llmlab.generation.labels import stat_items

    s = result.stats
    extra = {k: v for k, v in s.extra.items() if k != "accel"}
    return {
        "label": label,
        "preserving": preserving,
        "text": result.text,
        "token_ids": result.token_ids,
        "prompt_tokens": s.prompt_tokens,
        "new_tokens": s.new_tokens,
        "ttft_ms": None if s.ttft_s is None else round(s.ttft_s * 1000),
        "decode_tok_s": None if s.decode_tokens_per_s is None else round(s.decode_tokens_per_s, 1),
        "total_s": round(s.total_s, 2),
        "threads": s.threads,
        "extra": extra,
        # The same figures in words, as the panel and its offline copy show them.
        "extra_shown": [list(item) for item in stat_items(extra)],
        "warmup": warmup_note(s.extra),
        # Speculative runs: every verification step, for the panel's drafts view.
        "drafts": result.drafts.payload() if result.drafts is not None else None,
        "prompt": result.prompt,
    }


def _speedup(baseline_s: float | None, run_s: float | None) -> float | None:
    """How many times faster than the baseline (its time over this run's): > 1 is faster."""
    return round(baseline_s / run_s, 2) if baseline_s and run_s else None


def compare_to_baseline(record: dict[str, Any], baseline: dict[str, Any] | None) -> None:
    """Add ``vs_baseline`` to ``record``: speed-ups over the baseline run (end to end, the
    headline, beside decode and TTFT) and whether the tokens are the same, or why not.

    End to end is what a user waits for: a configuration can decode 5x faster and still be
    only 1.4x faster overall when its first token comes later. When the two answers differ in
    length, end to end compares seconds per output token (and says so)."""
    if baseline is None or record is baseline:
        return
    if baseline["prompt"] != record["prompt"]:
        record["vs_baseline"] = {"note": "the baseline ran another prompt: run it again"}
        return
    n = min(len(record["token_ids"]), len(baseline["token_ids"]))
    b_new, r_new = baseline["new_tokens"], record["new_tokens"]
    same_length = b_new == r_new
    if same_length:
        e2e = _speedup(baseline["total_s"], record["total_s"])
    else:
        e2e = _speedup(
            baseline["total_s"] / b_new if b_new else None,
            record["total_s"] / r_new if r_new else None,
        )
    b_tok, r_tok = baseline.get("decode_tok_s"), record.get("decode_tok_s")
    record["vs_baseline"] = {
        "e2e_speedup": e2e,
        "e2e_per_token": not same_length,
        "decode_ratio": round(r_tok / b_tok, 2) if r_tok and b_tok else None,
        "ttft_speedup": _speedup(baseline.get("ttft_ms"), record.get("ttft_ms")),
        "same_tokens": record["token_ids"][:n] == baseline["token_ids"][:n],
    }
    record["vs_baseline"]["headline"] = speedup_text(record["vs_baseline"])


def speedup_text(vs: dict[str, Any]) -> str:
    """``"1.40× baseline end to end · decode 5.20× · TTFT 0.48×"``: the headline first."""
    if vs.get("e2e_speedup") is None:
        return ""
    per = " (per output token)" if vs.get("e2e_per_token") else ""
    parts = [f"{vs['e2e_speedup']:.2f}× baseline end to end{per}"]
    if vs.get("decode_ratio") is not None:
        parts.append(f"decode {vs['decode_ratio']:.2f}×")
    if vs.get("ttft_speedup") is not None:
        parts.append(f"TTFT {vs['ttft_speedup']:.2f}×")
    return " · ".join(parts)


@dataclass(repr=False)
class AccelPanelState(Result):
    """Toggles for one model and its last runs (previous and latest, side by side)."""

    lm: Any  # LoadedModel (not serialised)
    models: dict[str, Any]  # every loaded model, for draft:NAME
    prompt: str = DEFAULT_PROMPT
    max_new_tokens: int = 64
    config: str = "baseline"
    runs: list[dict[str, Any]] = field(default_factory=list)  # shown: see shown_runs()
    baseline_run: dict[str, Any] | None = None  # the latest baseline run, the reference
    recent: list[dict[str, Any]] = field(default_factory=list)  # the last KEPT_RUNS runs
    prefix_cache: Any = None  # the session's PrefixCache for this model, if any

    def summary(self) -> str:
        return f"AccelPanel({self.lm.name}: {self.config}, {len(self.runs)} runs)"

    def payload(self) -> dict[str, Any]:
        return {
            "model": self.lm.name,
            "device": self.lm.device,
            "dtype": self.lm.dtype,
            "controls": controls(self.lm, self.models),
            "prompt": self.prompt,
            "max_new_tokens": self.max_new_tokens,
            "config": self.config,
        }

    def describe(self, config: str) -> dict[str, Any]:
        """Label and preserving claim of a config, or the one-line reason it cannot run."""
        from llmlab.errors import LabError

        try:
            target = self._target(config)
            target.check()
        except LabError as err:
            return {"label": config, "error": str(err)}
        return {"label": target.label, "preserving": target.claim, "error": None}

    def _target(self, config: str) -> Any:
        """The variant of this panel's model a config names (:mod:`llmlab.targets`)."""
        from llmlab.targets import VARIANT, resolve

        return resolve(config, self.lm, models=self.models, kinds=(VARIANT,))

    def run(self, config: str, prompt: str, max_new_tokens: int) -> dict[str, Any]:
        """Generate greedily with ``config``; keep the run beside the previous one."""
        from llmlab.generation.settings import GenerationSettings

        target = self._target(config)
        settings = GenerationSettings(max_new_tokens=max_new_tokens)
        result = target.generate(
            prompt,
            settings,
            prefix_cache=self.prefix_cache,
            measure_kl=True,  # speed and closeness to the loaded weights, side by side
            warmup=True,  # one timed run: its first time must not include a cold start
        )
        self.prompt, self.max_new_tokens, self.config = prompt, max_new_tokens, target.label
        record = run_record(result, target.label, target.claim)
        if target.is_baseline:
            self.baseline_run = record
        compare_to_baseline(record, self.baseline_run)
        self.recent = [*self.recent, record][-KEPT_RUNS:]
        self.runs = self.shown_runs()
        return record

    def shown_runs(self) -> list[dict[str, Any]]:
        """The latest runs, oldest first, with the baseline run first when it is not among
        them; each titled "baseline", "previous" or "this run"."""
        latest = self.recent
        shown = list(latest)
        if self.baseline_run is not None and not any(r is self.baseline_run for r in latest):
            shown.insert(0, self.baseline_run)
        out = []
        for r in shown:
            if r is latest[-1]:
                title = "this run"
            elif r is self.baseline_run:
                title = "baseline"
            else:
                title = "previous"
            out.append({**r, "title": title})
        return out

    def to_html(self) -> str:
        chosen = dict(parse_config(self.config, device=self.lm.device).parts)
        rows = []
        for c in controls(self.lm, self.models):
            selected = chosen.get(c["name"], c["default"])
            cells = []
            for v in c["values"]:
                style = [] if v["ok"] else ["color:#8c959f", "text-decoration:line-through"]
                if not v["preserving"]:
                    style.append("border-bottom:1.5px dashed #9a6700")
                mark = ""
                if v["value"] == selected:
                    style += [
                        "background:#0969da",
                        "color:#fff",
                        "padding:0 4px",
                        "border-radius:3px",
                    ]
                    mark = " ✓"
                attrs = f'title="{esc(v["why"] or v["help"])}" style="{";".join(style)}"'
                cells.append(f"<span {attrs}>{esc(v['value'])}{mark}</span>")
            rows.append(
                f"<tr><td><b>{esc(c['name'])}</b></td><td>{' · '.join(cells)}</td>"
                f"<td>{esc(c['changes'])}</td></tr>"
            )
        runs = "".join(
            f'<div style="flex:1;min-width:0"><b>{esc(r["title"])}</b> '
            f"<code>{esc(r['label'])}</code>"
            f'<div class="llmlab-text">{esc(r["text"])}</div>'
            f'<div class="llmlab-stats">{esc(_run_footer(r))}</div></div>'
            for r in self.shown_runs()
        )
        head = (
            f"<b>Accelerations for {esc(self.lm.name)}</b> ({esc(self.lm.device)}/"
            f"{esc(self.lm.dtype)}) · selected: <code>{esc(self.config)}</code> (blue ✓) · "
            "dashed underline: approximates the output · struck out: cannot run here "
            "(hover for why)"
        )
        body = f"<div>{head}</div><table>{''.join(rows)}</table>"
        if runs:
            body += f'<div style="display:flex;gap:1em">{runs}</div>'
        return card(body)


def _run_footer(r: dict[str, Any]) -> str:
    vs = r.get("vs_baseline") or {}
    parts = [speedup] if (speedup := speedup_text(vs)) else []
    parts.append(f"{r['new_tokens']} tokens in {r['total_s']:.2f} s")
    if r.get("ttft_ms") is not None:
        parts.append(f"TTFT {r['ttft_ms']:.0f} ms")
    if r.get("decode_tok_s") is not None:
        parts.append(f"decode {r['decode_tok_s']:.1f} tok/s")
    if r.get("threads"):
        parts.append(f"{r['threads']} thread{'s' if r['threads'] != 1 else ''}")
    if "same_tokens" in vs:
        parts.append("same tokens as the baseline" if vs["same_tokens"] else "tokens differ")
    if vs.get("note"):
        parts.append(vs["note"])
    parts.extend(f"{k} {v}" for k, v in r.get("extra_shown", []))
    if r.get("warmup"):
        parts.append(r["warmup"])
    return " · ".join(parts)
