"""Builds tests/data/human_eval/oi_tulu1_annotations.csv.gz from open-instruct's released TÜLU-1 annotations.

Source: allenai/open-instruct human_eval/data/eval_annotations_tulu_1.xlsx (Apache-2.0), read with the standard
library (an .xlsx is zipped XML). Kept: every judgement field open-instruct's compute_metrics.py reads, in file
order; dropped: prompt and completions (not counted; the test fills a placeholder). Excel serial timestamps become
"%Y-%m-%d %H:%M:%S" (the 1900 date system, epoch 1899-12-30, rounded to the second as the app wrote them).

    git -C OPEN_INSTRUCT show HEAD:human_eval/data/eval_annotations_tulu_1.xlsx > ann.xlsx
    python scripts/make_oi_annotations_fixture.py ann.xlsx tests/data/human_eval/oi_tulu1_annotations.csv.gz
"""
import csv
import datetime
import gzip
import re
import sys
import xml.etree.ElementTree as ET
import zipfile

M = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
KEEP = ("instance_index", "instance_id", "model_a", "model_b", "completion_a_is_acceptable",
        "completion_b_is_acceptable", "preference", "evaluator", "timestamp")


def sheet_rows(path):
    z = zipfile.ZipFile(path)
    shared = ["".join(t.text or "" for t in si.iter(M + "t"))
              for si in ET.fromstring(z.read("xl/sharedStrings.xml")).findall(M + "si")]
    for row in ET.fromstring(z.read("xl/worksheets/sheet1.xml")).find(M + "sheetData").findall(M + "row"):
        cells = {}
        for c in row.findall(M + "c"):
            v = c.find(M + "v")
            text = None if v is None else (shared[int(v.text)] if c.get("t") == "s" else v.text)
            cells[re.match(r"[A-Z]+", c.get("r")).group()] = text
        yield cells


def main(src, dst):
    rows = list(sheet_rows(src))
    header = {col: name for col, name in rows[0].items()}
    col = {name: c for c, name in header.items()}
    with gzip.open(dst, "wt", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(KEEP)
        n = 0
        for r in rows[1:]:
            if not r.get(col["evaluator"]):
                continue
            serial = float(r[col["timestamp"]])
            ts = datetime.datetime(1899, 12, 30) + datetime.timedelta(seconds=round(serial * 86400))
            out = {k: r.get(col[k]) for k in KEEP}
            out["instance_index"] = str(int(float(out["instance_index"])))
            out["timestamp"] = ts.strftime("%Y-%m-%d %H:%M:%S")
            w.writerow([out[k] for k in KEEP])
            n += 1
    print(f"{n} annotations -> {dst}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
