"""Routing statistics on recorded selections (numpy; shapes annotated on every array).

``experts`` is always ``(layers, tokens, k)`` with each token's choices heaviest first, so
``experts[..., 0]`` is the first choice.
"""

from __future__ import annotations

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
