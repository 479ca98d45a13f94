"""Routing statistics on recorded selections (numpy; shapes annotated on every array).

``experts`` is always ``(layers, tokens, k)`` with each token's choices heaviest first, so
``experts[..., 0]`` is the first choice.
"""

from __future__ import annotations

import re

import numpy as np


def load_counts(experts: np.ndarray, n_experts: int) -> tuple[np.ndarray, np.ndarray]:
    """Tokens per expert per layer: ``(top1, topk)``, each ``(layers, n_experts)``.

    ``top1`` counts first choices; ``topk`` counts a token once for each expert in its top-k.
    """
    top1 = np.stack([np.bincount(layer[:, 0], minlength=n_experts) for layer in experts])
    topk = np.stack([np.bincount(layer.reshape(-1), minlength=n_experts) for layer in experts])
    return top1, topk


def imbalance(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Coefficient of variation (std / mean) and max / mean of ``counts`` ``(layers, E)``."""
    mean = counts.mean(axis=-1)
    safe = np.where(mean > 0, mean, 1)
    return counts.std(axis=-1) / safe, counts.max(axis=-1) / safe


def coactivation(experts_one_layer: np.ndarray, n_experts: int) -> np.ndarray:
    """``P(j in top-k | i in top-k)`` as ``(E, E)``; rows of unused experts and the diagonal
    are 0. ``experts_one_layer`` is ``(tokens, k)``."""
    chosen = np.zeros((experts_one_layer.shape[0], n_experts), dtype=np.float64)  # (T, E)
    np.put_along_axis(chosen, experts_one_layer.astype(np.int64), 1.0, axis=1)
    together = chosen.T @ chosen  # (E, E): tokens that picked both i and j
    per_expert = np.diag(together).copy()
    np.fill_diagonal(together, 0)
    return together / np.where(per_expert > 0, per_expert, 1)[:, None]


def same_expert_rate(first: np.ndarray) -> np.ndarray:
    """Share of consecutive token pairs whose first choice is the same, per layer.

    ``first`` is ``(layers, tokens)``; a layer with fewer than two tokens gets NaN.
    """
    if first.shape[1] < 2:
        return np.full(first.shape[0], np.nan)
    return (first[:, 1:] == first[:, :-1]).mean(axis=1)


def shuffled_baseline(top1: np.ndarray) -> np.ndarray:
    """Expected same-expert rate if the same tokens came in random order: sum of squared
    first-choice shares per layer (1/E when the load is uniform). ``top1`` is (layers, E)."""
    share = top1 / np.maximum(top1.sum(axis=-1, keepdims=True), 1)
    return (share**2).sum(axis=-1)


def vocab_specialization(
    token_ids: np.ndarray, first: np.ndarray, min_count: int = 2
) -> tuple[np.ndarray, list[list[tuple[int, int, int, float]]]]:
    """For each token id seen at least ``min_count`` times: the share of its occurrences sent
    to its most frequent first-choice expert (OLMoE paper, §5).

    ``token_ids`` is ``(tokens,)``, ``first`` is ``(layers, tokens)``. Returns the
    occurrence-weighted mean per layer ``(layers,)`` and, per layer, every qualifying id as
    ``(token_id, count, expert, share)``, most specialised first.
    """
    ids, inverse, counts = np.unique(token_ids, return_inverse=True, return_counts=True)
    keep = counts >= min_count
    means, rows = [], []
    n_experts = int(first.max()) + 1 if first.size else 1
    for layer_first in first:
        table = np.zeros((len(ids), n_experts), dtype=np.int64)  # (unique ids, E)
        np.add.at(table, (inverse, layer_first), 1)
        best, best_count = table.argmax(axis=1), table.max(axis=1)
        share = best_count / counts
        weight = counts * keep
        means.append(float((share * weight).sum() / weight.sum()) if weight.sum() else np.nan)
        order = np.argsort(-(share + counts * 1e-6))  # ties: the more frequent id first
        rows.append(
            [(int(ids[i]), int(counts[i]), int(best[i]), float(share[i])) for i in order if keep[i]]
        )
    return np.array(means), rows


def permuted_specialization(
    token_ids: np.ndarray, first: np.ndarray, min_count: int = 2, seed: int = 0
) -> np.ndarray:
    """The same measure with token ids shuffled over positions: what it reads when routing
    ignores token identity (it is well above 1/E for rare ids, so compare with this)."""
    shuffled = np.random.default_rng(seed).permutation(token_ids)
    return vocab_specialization(shuffled, first, min_count)[0]


# -- specialisation: how far routing is from chance -------------------------------------------

TOKEN_CLASSES = ("code", "prose", "digit", "punctuation", "whitespace")

_CODE_LINE = re.compile(
    r"^\s*(def|class|import|from|return|if|elif|else|for|while|try|except|finally|with|raise|"
    r"yield|assert|lambda|pass|break|continue|async|await|@)\b|^(\s{2,}|\t)\S|\w\(|\)\s*:\s*$"
    r"|:\s*$|\w_\w|^\s*[\w.]+\s*[-+*/]?=[^=]"
)


def token_classes(tokens: list[str]) -> np.ndarray:
    """Each token's class, an index into ``TOKEN_CLASSES``: ``(tokens,)`` int8.

    Whitespace, digit and punctuation come from the token's own characters. A word token is
    code or prose by the line it sits on: docstrings (inside triple quotes) and comments are
    prose; a line is code when it looks like Python (a keyword first, indentation, a call,
    an assignment, a trailing colon, snake_case). A heuristic, stated as one, for any text.
    """
    text = "".join(tokens)
    prose_at = np.zeros(len(text) + 1, dtype=bool)
    pos, in_doc = 0, False
    for line in text.split("\n"):
        quotes = line.count('"""') + line.count("'''")
        comment = line.find("#")
        line_prose = in_doc or quotes > 0 or not _CODE_LINE.search(line)
        prose_at[pos : pos + len(line)] = line_prose
        if comment >= 0 and not in_doc:
            prose_at[pos + comment : pos + len(line)] = True
        in_doc = in_doc != (quotes % 2 == 1)
        pos += len(line) + 1
    classes = np.empty(len(tokens), dtype=np.int8)
    pos = 0
    for i, token in enumerate(tokens):
        stripped = token.strip()
        if not stripped:
            classes[i] = 4
        elif not any(c.isalpha() for c in stripped) and any(c.isdigit() for c in stripped):
            classes[i] = 2
        elif not any(c.isalnum() for c in stripped):
            classes[i] = 3
        else:
            start = pos + (len(token) - len(token.lstrip()))
            classes[i] = 1 if prose_at[min(start, len(text))] else 0
        pos += len(token)
    return classes


def mutual_information(labels: np.ndarray, experts: np.ndarray) -> float:
    """Plug-in mutual information, in bits, between two aligned label arrays ``(tokens,)``."""
    if labels.size == 0:
        return float("nan")
    a, na = _codes(labels)
    b, nb = _codes(experts)
    return _mi(a, na, b, nb)


def chance_mutual_information(
    labels: np.ndarray, experts: np.ndarray, rounds: int = 10, seed: int = 0
) -> float:
    """The same estimate with labels shuffled over tokens: what it reads when routing ignores
    the label (a plug-in estimate is biased upwards on few tokens; compare with this)."""
    if labels.size == 0:
        return float("nan")
    rng = np.random.default_rng(seed)
    a, na = _codes(labels)
    b, nb = _codes(experts)
    return float(np.mean([_mi(rng.permutation(a), na, b, nb) for _ in range(rounds)]))


def _codes(values: np.ndarray) -> tuple[np.ndarray, int]:
    uniques, codes = np.unique(values, return_inverse=True)
    return codes.ravel(), len(uniques)


def _mi(a: np.ndarray, na: int, b: np.ndarray, nb: int) -> float:
    joint = np.bincount(a * nb + b, minlength=na * nb).reshape(na, nb) / len(a)  # (na, nb)
    outer = joint.sum(1, keepdims=True) @ joint.sum(0, keepdims=True)
    nz = joint > 0
    return float((joint[nz] * np.log2(joint[nz] / outer[nz])).sum())


def balance(topk_counts: np.ndarray) -> np.ndarray:
    """Entropy of each layer's top-k load ÷ log E: 1 when every expert gets the same share.
    ``topk_counts`` is ``(layers, E)``."""
    share = topk_counts / np.maximum(topk_counts.sum(-1, keepdims=True), 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ent = -np.where(share > 0, share * np.log(share), 0).sum(-1)
    return ent / np.log(topk_counts.shape[-1])


def specialisation(
    first: np.ndarray, classes: np.ndarray, token_ids: np.ndarray, topk_counts: np.ndarray
) -> dict[str, np.ndarray]:
    """Per layer: MI(class; first expert) and MI(token id; first expert) in bits, each with its
    shuffled-label chance level, and load balance. ``first`` is ``(layers, tokens)``."""
    out = {k: [] for k in ("mi_class", "mi_class_chance", "mi_token", "mi_token_chance")}
    for layer_first in first:
        out["mi_class"].append(mutual_information(classes, layer_first))
        out["mi_class_chance"].append(chance_mutual_information(classes, layer_first))
        out["mi_token"].append(mutual_information(token_ids, layer_first))
        out["mi_token_chance"].append(chance_mutual_information(token_ids, layer_first))
    result = {k: np.asarray(v) for k, v in out.items()}
    result["balance"] = balance(topk_counts)
    return result
