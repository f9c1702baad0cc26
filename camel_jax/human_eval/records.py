"""One annotation in open-instruct's record schema, read from and written to JSONL or CSV.

This is the exchange format of the study: the app's database exports it, `import` reads it, `stats` and `report`
count it. The schema is open-instruct's (human_eval/export_db.py), so annotations collected with its app can be
analysed here and ours re-used there: acceptability as "yes"/"no", preference as one of PREFERENCES, from A's side.
Bad input fails with the file, the line and the field; nothing is half-read.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import os

from camel_jax import cli
from camel_jax.cli import UsageError

PREFERENCES = ("a-is-better", "a-is-slightly-better", "tie", "b-is-slightly-better", "b-is-better")
# A's advantage on the ordinal scale the statistics use: +2 clearly better ... -2 clearly worse.
PREFERENCE_SCORE = dict(zip(PREFERENCES, (2, 1, 0, -1, -2)))
ACCEPTABLE = ("yes", "no")
TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"  # open-instruct's; ours may carry fractional seconds ("...%S.%f")


@dataclasses.dataclass(frozen=True)
class Annotation:
    """One annotator's answer on one pair; `model_a` is the response shown on the left (side A)."""
    instance_id: str
    model_a: str
    model_b: str
    completion_a: str
    completion_b: str
    completion_a_is_acceptable: str
    completion_b_is_acceptable: str
    preference: str
    evaluator: str
    timestamp: str
    prompt: str = ""

    def flipped(self) -> "Annotation":
        """The same judgement with the sides swapped (so a fixed model can be read as A)."""
        return dataclasses.replace(
            self, model_a=self.model_b, model_b=self.model_a, completion_a=self.completion_b,
            completion_b=self.completion_a, completion_a_is_acceptable=self.completion_b_is_acceptable,
            completion_b_is_acceptable=self.completion_a_is_acceptable,
            preference=PREFERENCES[len(PREFERENCES) - 1 - PREFERENCES.index(self.preference)])

    @property
    def pair(self) -> tuple[str, str]:
        """The model pair in a canonical (sorted) order, whatever the sides."""
        return tuple(sorted((self.model_a, self.model_b)))


FIELDS = tuple(f.name for f in dataclasses.fields(Annotation))
REQUIRED = FIELDS[:-1]  # prompt is optional (open-instruct's export has it; its analysis does not need it)


def from_dict(row: dict, where: str) -> Annotation:
    """An Annotation from one JSON object or CSV row; `where` ("FILE:LINE") names it in every error."""
    if not isinstance(row, dict):
        raise UsageError(f"{where}: expected an object with the fields {', '.join(REQUIRED)}")
    missing = [k for k in REQUIRED if row.get(k) in (None, "")]
    if missing:
        raise UsageError(f"{where}: missing field {missing[0]!r} (every record needs {', '.join(REQUIRED)})")
    values = {k: str(row.get(k) if row.get(k) is not None else "") for k in FIELDS}
    values = {k: v.strip() if k not in ("completion_a", "completion_b", "prompt") else v for k, v in values.items()}
    for k in ("completion_a_is_acceptable", "completion_b_is_acceptable"):
        values[k] = values[k].lower()
        if values[k] not in ACCEPTABLE:
            raise UsageError(f"{where}: field {k!r} is {row.get(k)!r}; expected yes or no")
    if values["preference"] not in PREFERENCES:
        raise UsageError(f"{where}: field 'preference' is {row.get('preference')!r}; expected one of "
                         + ", ".join(PREFERENCES))
    if values["model_a"] == values["model_b"]:
        raise UsageError(f"{where}: model_a and model_b are both {values['model_a']!r}")
    return Annotation(**values)


def _format(path: str) -> str:
    ext = os.path.splitext(path)[1].lower()
    if ext not in (".jsonl", ".csv"):
        raise UsageError(f"{path}: expected a .jsonl or .csv file of annotations")
    return ext[1:]


def json_lines(path: str):
    """(line number, object) per non-blank line of a JSONL file; a bad line is a UsageError naming file:line."""
    return cli.json_lines(path, UsageError)


def read_annotations(path: str) -> list[Annotation]:
    """Every annotation in a .jsonl or .csv file, or a UsageError naming the first bad line (nothing half-read)."""
    fmt = _format(path)
    if not os.path.isfile(path):
        raise UsageError(f"{path}: no such file")
    if fmt == "jsonl":
        return [from_dict(row, f"{path}:{n}") for n, row in json_lines(path)]
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        absent = [k for k in REQUIRED if k not in (reader.fieldnames or ())]
        if absent:
            raise UsageError(f"{path}:1: the CSV header lacks the column {absent[0]!r}")
        return [from_dict(row, f"{path}:{reader.line_num}") for row in reader]


def write_annotations(path: str, annotations: list[Annotation]) -> None:
    """Write annotations as .jsonl or .csv (by extension), atomically: a kill leaves the old file or the new one."""
    fmt = _format(path)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        if fmt == "jsonl":
            for a in annotations:
                f.write(json.dumps(dataclasses.asdict(a), ensure_ascii=False) + "\n")
        else:
            writer = csv.DictWriter(f, fieldnames=FIELDS)
            writer.writeheader()
            for a in annotations:
                writer.writerow(dataclasses.asdict(a))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
