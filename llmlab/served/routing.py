"""MoE routing from a served model: what an OpenAI-compatible server can tell, asked once.

vLLM records per-token routed experts when started with ``--enable-return-routed-experts``
(vLLM PR #28284; it also needs prefix caching and a MoE model) and returns them in non-streamed
responses as ``choices[i].routed_experts``: base64 ``.npy`` bytes of shape (tokens - 1, layers,
top-k) holding expert ids. In vLLM 0.32.0 only Model Runner V2 records them
(``vllm/v1/worker/gpu/model_runner.py``, its aux-output connector); the CPU build runs the V1
runner ("Model Runner V2 requires Triton; using the V1 model runner instead"), which has no such
capture. Tried on the CPU build with the demo MoE (a Qwen3-MoE it serves): the server refuses
to start with ``--enable-return-routed-experts`` ("AuxOutput Connector requires Model Runner V2;
set VLLM_USE_V2_MODEL_RUNNER=1"), and with that variable set ("Model Runner V2 requires
Triton"). And the ids alone are not llmlab's MoE view: it also shows the router's weights and
probabilities, which no server sends.

So ``%llm moe`` on a served model asks the server once and says in one line what it returned
and what would give the view.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmlab.errors import LabError

if TYPE_CHECKING:
    from llmlab.served.model import ServedModel

WHAT_WOULD = (
    "a vLLM running Model Runner V2 (a GPU build: vLLM 0.32.0's CPU build refuses "
    "--enable-return-routed-experts, its V2 runner needs Triton) started with "
    "--enable-return-routed-experts --enable-prefix-caching on a MoE model returns expert ids "
    "per token, but no router weights; for the full view load the model locally "
    "(%llm load FOLDER, e.g. the demo MoE)"
)


def routed_experts_probe(sm: ServedModel, text: str = "Hello") -> str:
    """One non-streamed request (1 token): what the server says about routed experts."""
    body = {
        "model": sm.model_id,
        "messages": [{"role": "user", "content": text}],
        "max_tokens": 1,
        "temperature": 0.0,
    }
    try:
        choice = sm.endpoint.post_json("chat/completions", body)["choices"][0]
    except LabError as err:
        return f"a probe request failed ({err})"
    except (KeyError, IndexError, TypeError):
        return "its answer to a probe request carried no choices"
    if not isinstance(choice, dict):
        return "its answer to a probe request carried no choices"
    if "routed_experts" not in choice:
        return "its responses have no routed_experts field (not a vLLM with routing capture)"
    data = choice["routed_experts"]
    if data is None:
        return (
            "it returned routed_experts: null (vLLM without --enable-return-routed-experts, or a "
            "runner that records none, as its CPU build's)"
        )
    return f"it returned routed experts ({len(str(data))} base64 characters of expert ids)"


def served_routing_error(sm: ServedModel, text: str = "Hello") -> LabError:
    """The one line ``%llm moe`` gives for a served model."""
    return LabError(
        f"{sm.name} is a served model ({sm.endpoint.base_url}): its weights stay on the server, "
        f"so llmlab cannot read its routing; {routed_experts_probe(sm, text)}. What would: "
        f"{WHAT_WOULD}"
    )
