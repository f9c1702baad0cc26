"""Builds tests/data/human_eval/oi_tulu1_annotations.csv.gz from open-instruct's released TÜLU-1 annotations.

Source: allenai/open-instruct human_eval/data/eval_annotations_tulu_1.xlsx (Apache-2.0), read by
scripts/oi_annotations_to_csv.py (standard library only). Kept: every judgement field open-instruct's
compute_metrics.py reads, in file order; dropped: prompt and completions (not counted; the test fills a placeholder).

    git -C OPEN_INSTRUCT show HEAD:human_eval/data/eval_annotations_tulu_1.xlsx > ann.xlsx
    python scripts/make_oi_annotations_fixture.py ann.xlsx tests/data/human_eval/oi_tulu1_annotations.csv.gz
"""
import csv
import gzip
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from oi_annotations_to_csv import judgements  # noqa: E402

KEEP = ("instance_index", "instance_id", "model_a", "model_b", "completion_a_is_acceptable",
        "completion_b_is_acceptable", "preference", "evaluator", "timestamp")


def main(src, dst):
    _, records, _ = judgements(src)
    with gzip.open(dst, "wt", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(KEEP)
        for r in records:
            w.writerow([str(int(float(r["instance_index"]))) if k == "instance_index" else r[k] for k in KEEP])
    print(f"{len(records)} annotations -> {dst}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
