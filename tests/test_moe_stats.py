"""Routing statistics on hand-made selections."""

import numpy as np

from llmlab.moe import stats


def test_coactivation_counts_pairs_within_a_token():
    experts = np.array([[0, 1], [0, 2], [1, 0]])  # (tokens, k)
    p = stats.coactivation(experts, 3)
    # Expert 0 is in 3 tokens: twice with 1, once with 2.
    np.testing.assert_allclose(p[0], [0, 2 / 3, 1 / 3])
    np.testing.assert_allclose(p[2], [1, 0, 0])


def test_runs_and_shuffled_baseline():
    first = np.array([[0, 0, 1, 1]])
    np.testing.assert_allclose(stats.same_expert_rate(first), [2 / 3])
    top1 = np.array([[2, 2, 0, 0]])
    np.testing.assert_allclose(stats.shuffled_baseline(top1), [0.5])


def test_vocab_specialization_and_imbalance():
    ids = np.array([5, 5, 5, 5, 7, 7, 9])
    first = np.array([[1, 1, 1, 0, 2, 3, 0]])
    mean, rows = stats.vocab_specialization(ids, first)
    # id 5: 3 of 4 to expert 1; id 7: 1 of 2; id 9 is seen once and left out.
    np.testing.assert_allclose(mean, [(4 * 0.75 + 2 * 0.5) / 6])
    assert rows[0][0] == (5, 4, 1, 0.75)
    cv, max_mean = stats.imbalance(np.array([[2, 2, 2, 2], [8, 0, 0, 0]]))
    np.testing.assert_allclose(cv, [0, np.sqrt(3)])
    np.testing.assert_allclose(max_mean, [1, 4])
