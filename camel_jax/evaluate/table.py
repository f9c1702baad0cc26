"""The paper's results table: 11 columns and the Average, from the metrics files of an evaluation folder.

Average (open_instruct.md §4.9, checked against the TÜLU 7B/30B cards): the mean of the six benchmark groups, each
the mean of its settings (AlpacaFarm is a group of one). It is only "the" Average when all 11 columns are there;
otherwise the table says so and gives the mean over what was run, marked partial, never passing it off as the
paper's number.
"""
from __future__ import annotations

import json
import math
import os
from typing import Mapping

GROUPS = ("mmlu", "gsm", "bbh", "tydiqa", "codex", "alpaca_farm")
COLUMNS = (  # (title, group) in the paper's order
    ("MMLU 0-shot", "mmlu"), ("MMLU 5-shot", "mmlu"), ("GSM Direct", "gsm"), ("GSM CoT", "gsm"),
    ("BBH Direct", "bbh"), ("BBH CoT", "bbh"), ("TydiQA GP", "tydiqa"), ("TydiQA CB", "tydiqa"),
    ("Codex P@1", "codex"), ("Codex P@10", "codex"), ("AlpacaFarm win rate", "alpaca_farm"),
)
COLUMN_GROUP = dict(COLUMNS)
NOT_RUN = "not run"


def _cell(metrics: Mapping | None, key: str) -> tuple[float | None, str]:
    """(value, status): a finite number is "ok"; a run without the number says why (a module may set
    metrics["status"], e.g. "not judged")."""
    if metrics is None:
        return None, NOT_RUN
    value = metrics.get(key)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value), "ok"
    return None, str(metrics.get("status") or "no score")


def build(out_dir: str, settings) -> dict:
    """The table of `out_dir` (one sub-folder per task holding metrics.json), for the registered settings."""
    by_column = {s.column: s for s in settings}
    cols = []
    for title, group in COLUMNS:
        s = by_column.get(title)
        metrics = None
        if s is not None:
            path = os.path.join(out_dir, s.name, "metrics.json")
            if os.path.isfile(path):
                with open(path, encoding="utf-8") as f:
                    metrics = json.load(f)
        value, status = _cell(metrics, s.metric if s else "")
        cols.append({"column": title, "group": group, "task": s.name if s else None, "value": value,
                     "status": status})
    groups = {}
    for g in GROUPS:
        vals = [c["value"] for c in cols if c["group"] == g and c["value"] is not None]
        if vals:
            groups[g] = sum(vals) / len(vals)
    complete = all(c["value"] is not None for c in cols)
    mean = sum(groups.values()) / len(groups) if groups else None
    return {"columns": cols, "groups": groups, "average": mean if complete else None,
            "partial_average": None if complete else mean, "groups_run": sorted(groups, key=GROUPS.index)}


def markdown(table: dict, name: str = "") -> str:
    def fmt(c):
        return f"{c['value']:.1f}" if c["value"] is not None else c["status"]

    head = ["model"] + [c["column"] for c in table["columns"]] + ["Average"]
    if table["average"] is not None:
        avg = f"{table['average']:.1f}"
    elif table["partial_average"] is not None:
        avg = f"{table['partial_average']:.1f}*"
    else:
        avg = NOT_RUN
    row = [name] + [fmt(c) for c in table["columns"]] + [avg]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head), "| " + " | ".join(row) + " |"]
    if table["average"] is None and table["partial_average"] is not None:
        lines.append("")
        lines.append(f"\\* partial: the mean over the {len(table['groups_run'])} of 6 benchmark groups run "
                     f"({', '.join(table['groups_run'])}), each the mean of its settings run; not the paper's "
                     f"Average.")
    return "\n".join(lines) + "\n"


def write(out_dir: str, settings, name: str = "") -> dict:
    table = build(out_dir, settings)
    with open(os.path.join(out_dir, "table.json"), "w", encoding="utf-8") as f:
        json.dump(table, f, indent=2)
    with open(os.path.join(out_dir, "table.md"), "w", encoding="utf-8") as f:
        f.write(markdown(table, name))
    return table
