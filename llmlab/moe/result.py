"""The routing of one or more texts through a MoE model, as a typed result.

Arrays are kept exactly (int16 experts, float32 weights); the live view gets them packed
(one byte per expert index and per weight, base64) because a 2,048-token text on a 16-layer,
top-8 model is 262k choices: as JSON lists that would be megabytes.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from llmlab.errors import LabError
from llmlab.moe import stats
from llmlab.results import Result

if TYPE_CHECKING:
    import pandas as pd


@dataclass(repr=False)
class RoutedInput:
    """One text and its routing. ``experts``/``weights`` are ``(moe layers, tokens, k)``,
    each token's choices heaviest first; tokens from ``n_prompt`` on were generated."""

    name: str
    text: str
    token_ids: list[int]
    tokens: list[str]
    n_prompt: int
    experts: np.ndarray
    weights: np.ndarray

    @property
    def n_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def classes(self) -> np.ndarray:
        """Each token's class (``stats.TOKEN_CLASSES``: code, prose, digit, punctuation,
        whitespace) as ``(tokens,)`` int8."""
        return stats.token_classes(self.tokens)


@dataclass(repr=False)
class MoeRouting(Result):
    """Which experts every token went to in every MoE layer, with the statistics of it.

    Layers are named by their true decoder-layer index (``moe_layers``); dense layers between
    sparse ones are not in the arrays.
    """

    model: str
    family: str
    rule: str
    n_experts: int
    top_k: int
    moe_layers: list[int]
    n_layers: int
    inputs: list[RoutedInput]
    focus_layer: int
    notes: list[str] = field(default_factory=list)
    # The same tokens routed by the untrained model (same architecture, init seed), per input
    # ``(moe layers, tokens, k)``; None where no untrained twin was built.
    untrained: list[np.ndarray] | None = None
    untrained_label: str = ""

    # -- arrays -----------------------------------------------------------------------------
    @property
    def n_tokens(self) -> int:
        return sum(i.n_tokens for i in self.inputs)

    @property
    def experts(self) -> np.ndarray:
        """All inputs' selections side by side: ``(moe layers, tokens, k)``."""
        return np.concatenate([i.experts for i in self.inputs], axis=1)

    @property
    def weights(self) -> np.ndarray:
        return np.concatenate([i.weights for i in self.inputs], axis=1)

    @property
    def token_ids(self) -> np.ndarray:
        return np.concatenate([np.asarray(i.token_ids, dtype=np.int64) for i in self.inputs])

    def layer_position(self, layer: int) -> int:
        """Row of ``layer`` (a true decoder-layer index) in the arrays."""
        if layer not in self.moe_layers:
            raise LabError(f"layer {layer} is not a MoE layer; MoE layers: {self.moe_layers}")
        return self.moe_layers.index(layer)

    # -- statistics ---------------------------------------------------------------------------
    def load_counts(self) -> tuple[np.ndarray, np.ndarray]:
        """Tokens per expert ``(top1, topk)``, each ``(moe layers, E)``."""
        return stats.load_counts(self.experts, self.n_experts)

    def coactivation(self, layer: int | None = None) -> np.ndarray:
        """``P(j | i)`` ``(E, E)`` among the top-k picks of one MoE layer."""
        layer = self.focus_layer if layer is None else layer
        return stats.coactivation(self.experts[self.layer_position(layer)], self.n_experts)

    def same_expert_runs(self) -> dict[str, np.ndarray]:
        """Per layer: observed share of consecutive tokens keeping their first choice (pairs
        never cross two inputs), the shuffled-order baseline, and the uniform 1/E."""
        pairs = np.zeros(len(self.moe_layers))
        same = np.zeros(len(self.moe_layers))
        for item in self.inputs:
            first = item.experts[..., 0]
            if first.shape[1] >= 2:
                same += (first[:, 1:] == first[:, :-1]).sum(axis=1)
                pairs += first.shape[1] - 1
        top1, _ = self.load_counts()
        with np.errstate(invalid="ignore", divide="ignore"):
            observed = same / pairs
        return {
            "observed": observed,
            "shuffled": stats.shuffled_baseline(top1),
            "uniform": np.full(len(self.moe_layers), 1 / self.n_experts),
        }

    def input_shares(self) -> np.ndarray:
        """Each input's share of top-k picks per expert: ``(inputs, moe layers, E)``;
        uniform is 1/E."""
        shares = []
        for item in self.inputs:
            _, topk = stats.load_counts(item.experts, self.n_experts)
            shares.append(topk / max(item.n_tokens * self.top_k, 1))
        return np.stack(shares)

    def vocab_specialization(self, min_count: int = 2) -> dict[str, Any]:
        """Share of a token id's occurrences sent to its most frequent first-choice expert,
        per layer (``mean``), next to the same measure with ids shuffled (``baseline``)."""
        first = self.experts[..., 0]
        mean, rows = stats.vocab_specialization(self.token_ids, first, min_count)
        baseline = stats.permuted_specialization(self.token_ids, first, min_count)
        return {"mean": mean, "baseline": baseline, "rows": rows}

    def specialisation(self) -> pd.DataFrame:
        """Per layer, how far routing is from chance, beside the untrained router's figure:
        mutual information (bits) between each token's first-choice expert and its class
        (code / prose / digit / punctuation / whitespace) or its identity, each with the
        shuffled-label chance level, and load balance (entropy of the top-k load ÷ log E)."""
        import pandas as pd

        cached = self.__dict__.get("_specialisation")
        if cached is not None:  # the payload and the static HTML both show it
            return cached.copy()
        classes = np.concatenate([i.classes for i in self.inputs])
        ids = self.token_ids
        trained = stats.specialisation(self.experts[..., 0], classes, ids, self.load_counts()[1])
        table = pd.DataFrame({"layer": self.moe_layers})
        base = None
        if self.untrained is not None:
            experts = np.concatenate(self.untrained, axis=1)
            topk = stats.load_counts(experts, self.n_experts)[1]
            base = stats.specialisation(experts[..., 0], classes, ids, topk)
        for key in ("mi_class", "mi_token", "balance"):
            table[key] = trained[key]
            if base is not None:
                table[f"{key}_untrained"] = base[key]
        table["mi_class_chance"] = trained["mi_class_chance"]
        table["mi_token_chance"] = trained["mi_token_chance"]
        self.__dict__["_specialisation"] = table
        return table.copy()

    def class_shares(self, layer: int | None = None) -> np.ndarray:
        """``(classes, E)``: for each token class, the share of its tokens whose first choice
        is each expert, in one MoE layer (rows of absent classes are 0)."""
        layer = self.focus_layer if layer is None else layer
        first = self.experts[self.layer_position(layer), :, 0]
        classes = np.concatenate([i.classes for i in self.inputs])
        table = np.zeros((len(stats.TOKEN_CLASSES), self.n_experts))
        np.add.at(table, (classes, first), 1)
        return table / np.maximum(table.sum(1, keepdims=True), 1)

    # -- tables ---------------------------------------------------------------------------------
    def to_pandas(self) -> pd.DataFrame:
        """One row per (input, token, layer, rank): the expert and its gate weight."""
        import pandas as pd

        frames = []
        for item in self.inputs:
            n_layers, n_tokens, k = item.experts.shape
            grid = np.indices((n_layers, n_tokens, k)).reshape(3, -1)
            frames.append(
                pd.DataFrame(
                    {
                        "input": item.name,
                        "position": grid[1],
                        "token": np.asarray(item.tokens, dtype=object)[grid[1]],
                        "token_id": np.asarray(item.token_ids)[grid[1]],
                        "generated": grid[1] >= item.n_prompt,
                        "layer": np.asarray(self.moe_layers)[grid[0]],
                        "rank": grid[2],
                        "expert": item.experts.reshape(-1),
                        "weight": item.weights.reshape(-1),
                    }
                )
            )
        return pd.concat(frames, ignore_index=True)

    def load_table(self) -> pd.DataFrame:
        """Per layer: imbalance figures of the top-1 and top-k loads."""
        import pandas as pd

        top1, topk = self.load_counts()
        cv1, mm1 = stats.imbalance(top1)
        cvk, mmk = stats.imbalance(topk)
        runs = self.same_expert_runs()
        return pd.DataFrame(
            {
                "layer": self.moe_layers,
                "cv_top1": cv1,
                "max_mean_top1": mm1,
                "cv_topk": cvk,
                "max_mean_topk": mmk,
                "same_expert_rate": runs["observed"],
                "shuffled_baseline": runs["shuffled"],
            }
        )

    # -- display -------------------------------------------------------------------------------
    def summary(self) -> str:
        n = len(self.inputs)
        texts = f" in {n} inputs" if n > 1 else ""
        return (
            f"MoE routing of {self.n_tokens} tokens{texts} through {len(self.moe_layers)} MoE "
            f"layers of {self.model} ({self.family}: {self.n_experts} experts, top-{self.top_k})"
        )

    def to_text(self) -> str:
        table = self.load_table().round(3).to_string(index=False)
        spec = self.specialisation().round(3).to_string(index=False)
        words = "specialisation (bits; untrained: " + (self.untrained_label or "none") + ")"
        return "\n".join([self.summary(), f"rule: {self.rule}", *self.notes, table, words, spec])

    def payload(self) -> dict[str, Any]:
        """Compact JSON for the live view: per-choice arrays packed as bytes (base64)."""
        from llmlab.moe.render import expert_palette

        experts, weights = self.experts, self.weights
        top1, topk = self.load_counts()
        cv1, mm1 = stats.imbalance(top1)
        cvk, mmk = stats.imbalance(topk)
        runs = self.same_expert_runs()
        vocab = self.vocab_specialization()
        w_max = float(weights.max()) if weights.size else 1.0
        index_dtype = np.uint8 if self.n_experts <= 256 else np.dtype("<u2")
        starts = np.cumsum([0] + [i.n_tokens for i in self.inputs]).tolist()
        all_tokens = [t for i in self.inputs for t in i.tokens]
        return {
            "model": self.model,
            "family": self.family,
            "rule": self.rule,
            "n_experts": self.n_experts,
            "top_k": self.top_k,
            "layers": self.moe_layers,
            "n_layers": self.n_layers,
            "focus_layer": self.focus_layer,
            "notes": self.notes,
            "palette": expert_palette(self.n_experts),
            "inputs": [
                {"name": i.name, "start": s, "n": i.n_tokens, "n_prompt": i.n_prompt}
                for i, s in zip(self.inputs, starts)
            ],
            "tokens": all_tokens,
            # (layers, tokens, k), C order; weights as round(w / w_max * 255).
            "experts_b64": _b64(experts.astype(index_dtype)),
            "index_bytes": np.dtype(index_dtype).itemsize,
            "weights_b64": _b64(np.round(weights / (w_max or 1.0) * 255).astype(np.uint8)),
            "weight_max": w_max,
            "load_top1": top1.tolist(),
            "load_topk": topk.tolist(),
            "cv_top1": _rounded(cv1),
            "max_mean_top1": _rounded(mm1),
            "cv_topk": _rounded(cvk),
            "max_mean_topk": _rounded(mmk),
            "runs_observed": _rounded(runs["observed"]),
            "runs_shuffled": _rounded(runs["shuffled"]),
            "input_shares": _rounded(self.input_shares()) if len(self.inputs) > 1 else [],
            "vocab_mean": _rounded(vocab["mean"]),
            "vocab_baseline": _rounded(vocab["baseline"]),
            "class_names": list(stats.TOKEN_CLASSES),
            "classes": np.concatenate([i.classes for i in self.inputs]).tolist(),
            "specialisation": {k: _rounded(v.to_numpy()) for k, v in self.specialisation().items()},
            "untrained_label": self.untrained_label,
            "vocab_top": [
                [[self._token_text(t), c, e, round(s, 3)] for t, c, e, s in rows[:12]]
                for rows in vocab["rows"]
            ],
        }

    def _token_text(self, token_id: int) -> str:
        for item in self.inputs:
            if token_id in item.token_ids:
                return item.tokens[item.token_ids.index(token_id)]
        return str(token_id)

    def to_html(self) -> str:
        from llmlab.moe.render import routing_html

        return routing_html(self)


def _b64(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array).tobytes()).decode("ascii")


def _rounded(array: np.ndarray, digits: int = 4) -> Any:
    """Nested lists with NaN as None (JSON has no NaN)."""
    rounded = np.round(np.asarray(array, dtype=np.float64), digits)
    return np.where(np.isnan(rounded), None, rounded).tolist()
