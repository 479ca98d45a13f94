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


def test_token_classes_split_code_prose_digits_punctuation_whitespace():
    tokens = [
        "def",
        " f",
        "(",
        "x",
        "):",
        "\n   ",
        ' """',
        "Add",
        " one",
        '."""',
        "\n   ",
        " return",
        " x",
        " +",
        " ",
        "1",
        "\n",
        "The",
        " cat",
        " sat",
        ".",
    ]
    names = [stats.TOKEN_CLASSES[c] for c in stats.token_classes(tokens)]
    assert names[:5] == ["code", "code", "punctuation", "code", "punctuation"]
    assert names[5] == "whitespace" and names[7:9] == ["prose", "prose"]  # the docstring
    assert names[11:16] == ["code", "code", "punctuation", "whitespace", "digit"]
    assert names[17:] == ["prose", "prose", "prose", "punctuation"]


def test_mutual_information_bounds_and_chance():
    labels = np.array([0, 0, 1, 1] * 50)
    np.testing.assert_allclose(stats.mutual_information(labels, labels + 3), 1.0)  # 1 bit
    np.testing.assert_allclose(stats.mutual_information(labels, np.zeros(200)), 0.0)
    rng = np.random.default_rng(0)
    random_experts = rng.integers(0, 8, 200)
    assert stats.chance_mutual_information(labels, random_experts) < 0.05
    np.testing.assert_allclose(stats.balance(np.array([[5, 5, 5, 5], [20, 0, 0, 0]])), [1, 0])


def test_routing_specialisation_beside_the_untrained_twin():
    from llmlab.models.registry import load_model
    from llmlab.moe import capture_routing

    lm = load_model("tiny:mixtral")
    text = "def f(x):\n    return x + 1\nThe cat sat on the mat. 42"
    plain = capture_routing(lm, text)  # a random model: no twin by default
    assert plain.untrained is None and "mi_class_untrained" not in plain.specialisation()
    routing = capture_routing(lm, text, untrained=True)
    table = routing.specialisation()
    # The tiny model is itself the seed-0 initialisation, so its twin routes identically.
    np.testing.assert_allclose(table["mi_class"], table["mi_class_untrained"])
    assert "seed 0" in routing.untrained_label
    assert {"mi_token", "balance", "mi_class_chance"} <= set(table)
    assert "Specialisation" in routing.to_html()
    payload = routing.payload()
    assert len(payload["classes"]) == routing.n_tokens
    assert payload["specialisation"]["mi_class_untrained"] == payload["specialisation"]["mi_class"]
