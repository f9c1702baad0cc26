"""The answer metrics the paper's evals call: HF `evaluate`'s exact_match (GSM, BBH) and SQuAD v1.1 EM/F1 (TyDiQA).

Reimplemented, not imported: `evaluate.load(...)` fetches each metric's script from the Hugging Face hub at run
time, which a reproducible offline evaluation cannot depend on. The behaviour follows the sources exactly:

* `exact_match` (evaluate-metric/exact_match, as open-instruct called it with ignore_case=True,
  ignore_punctuation=True): `np.char.lower`, then `np.char.translate` deleting `string.punctuation` (ASCII only),
  then array equality — no whitespace normalisation, so "(A)" equals "A" but "A " does not equal "A", and a gold
  made only of punctuation (dyck's ") ]") reduces to its spaces. Done through numpy as there, so numpy's fixed-width
  string arrays also drop trailing NULs as the reference does.
* `squad_*` (the official SQuAD v1.1 evaluate script, which evaluate-metric/squad ships as compute_score.py):
  lowercase, delete `string.punctuation`, replace the words a/an/the by a space, collapse whitespace; F1 over
  whitespace tokens with their multiplicities; both take the max over the gold answers.
"""
from __future__ import annotations

import re
import string
from collections import Counter
from typing import Sequence

import numpy as np

_PUNCT_TABLE = str.maketrans("", "", string.punctuation)


def exact_match_flags(predictions: Sequence[str], references: Sequence[str], ignore_case: bool = True,
                      ignore_punctuation: bool = True) -> list[bool]:
    """Per-pair exact match as evaluate's exact_match computes it before taking the mean."""
    if len(predictions) != len(references):
        raise ValueError(f"exact_match: {len(predictions)} predictions for {len(references)} references")
    if not predictions:
        return []
    preds = np.asarray(list(predictions), dtype=str)
    refs = np.asarray(list(references), dtype=str)
    if ignore_case:
        preds, refs = np.char.lower(preds), np.char.lower(refs)
    if ignore_punctuation:
        preds = np.char.translate(preds, table=_PUNCT_TABLE)
        refs = np.char.translate(refs, table=_PUNCT_TABLE)
    return [bool(x) for x in (preds == refs)]


def exact_match(predictions: Sequence[str], references: Sequence[str], ignore_case: bool = True,
                ignore_punctuation: bool = True) -> float:
    """evaluate's `exact_match` as a percentage (0-100); 0.0 for no pairs."""
    flags = exact_match_flags(predictions, references, ignore_case, ignore_punctuation)
    return 100.0 * sum(flags) / len(flags) if flags else 0.0


def squad_normalize(text: str) -> str:
    """SQuAD v1.1 `normalize_answer`: lower, drop punctuation, drop articles, collapse whitespace (in that order)."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in string.punctuation)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def squad_f1(prediction: str, gold: str) -> float:
    pred, ref = squad_normalize(prediction).split(), squad_normalize(gold).split()
    same = sum((Counter(pred) & Counter(ref)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


def squad_em(prediction: str, gold: str) -> bool:
    return squad_normalize(prediction) == squad_normalize(gold)


def squad_scores(prediction: str, golds: Sequence[str]) -> tuple[float, float]:
    """(EM, F1) of one prediction, each the max over the gold answers (0-1)."""
    if not golds:
        raise ValueError("squad_scores: a question needs at least one gold answer")
    return (float(max(squad_em(prediction, g) for g in golds)), max(squad_f1(prediction, g) for g in golds))
