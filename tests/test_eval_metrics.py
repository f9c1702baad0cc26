"""evaluate/metrics.py against its references: HF evaluate's exact_match (its documented examples and the
numpy/str.translate semantics open-instruct relied on) and the SQuAD v1.1 script's normalisation and F1."""
import pytest

from camel_jax.evaluate import metrics

REFS = ["the cat", "theater", "YELLING", "agent007"]
PREDS = ["cat?", "theater", "yelling", "agent"]


def test_exact_match_documented_examples():
    # evaluate-metric/exact_match docstring: 0.25 with no flags, 0.33 for the sentences; 0.5 ignoring case and
    # punctuation follows from the same rules ("cat" != "the cat", "agent" != "agent007").
    assert metrics.exact_match(PREDS, REFS, ignore_case=False, ignore_punctuation=False) == 25.0
    assert metrics.exact_match(PREDS, REFS) == 50.0
    refs = ["The cat sat on the mat.", "Theaters are great.", "It's like comparing oranges and apples."]
    preds = ["The cat sat on the mat?", "Theaters are great.", "It's like comparing apples and oranges."]
    assert round(metrics.exact_match(preds, refs, False, False), 2) == 33.33


@pytest.mark.parametrize("pred,gold,same", [
    ("(A)", "A", True),  # punctuation removal makes the option letters equal
    ("A", "(A)", True),
    ("(a)", "(A)", True),
    ("True.", "True", True),
    ("A ", "A", False),  # no whitespace normalisation in evaluate's exact_match
    (") ]", ")]", False),  # dyck: the spaces survive, the brackets do not
    (")", "]", True),  # ... so any all-punctuation answers match each other
    ("«A»", "A", False),  # string.punctuation is ASCII only
    ("", "", True),
    ("12,000", "12000", True),
    ("-3", "3", True),
    ("A\x00", "A", True),  # numpy's fixed-width strings drop trailing NULs, as the reference's arrays do
])
def test_exact_match_edge_cases(pred, gold, same):
    assert metrics.exact_match_flags([pred], [gold]) == [same]


def test_exact_match_needs_pairs():
    assert metrics.exact_match([], []) == 0.0
    with pytest.raises(ValueError, match="2 predictions for 1 references"):
        metrics.exact_match(["a", "b"], ["a"])


@pytest.mark.parametrize("text,want", [
    ("The  Cat, sat!", "cat sat"),
    ("an apple a day", "apple day"),
    ("Theater", "theater"),  # articles only as whole words
    ("  A. B.  ", "b"),  # "a." loses its period, then is an article
    ("7,110,214", "7110214"),
    ("", ""),
])
def test_squad_normalize(text, want):
    assert metrics.squad_normalize(text) == want


def test_squad_f1_em_by_hand():
    assert metrics.squad_f1("the big red dog", "red dog") == pytest.approx(0.8)  # P 2/3, R 1
    assert metrics.squad_f1("dog dog", "dog") == pytest.approx(2 / 3)  # multiplicities: P 1/2, R 1
    assert metrics.squad_f1("", "dog") == 0.0
    assert metrics.squad_em("The Dog.", "dog") and not metrics.squad_em("dogs", "dog")
    # an empty prediction against a gold that normalises to nothing: EM 1 but F1 0, as the official script gives
    assert metrics.squad_scores("", ["The"]) == (1.0, 0.0)
    # max over the gold answers, taken separately for EM and F1
    assert metrics.squad_scores("red dog", ["a big red dog", "cat"]) == (0.0, pytest.approx(0.8))
    assert metrics.squad_scores("Nile", ["Mto Nile", "nile"]) == (1.0, 1.0)
    with pytest.raises(ValueError, match="gold"):
        metrics.squad_scores("x", [])
