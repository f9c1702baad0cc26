"""open-instruct's released TÜLU 1 judgements (human_eval/data/eval_annotations_tulu_1.xlsx) as a CSV that
`python -m camel_jax.human_eval import` reads, with the standard library only (no openpyxl/pandas).

The sheet is open-instruct's export_db.py output saved by a spreadsheet program: timestamps became day serials
(converted back to "%Y-%m-%d %H:%M:%S", rounded to the second) and 152 rows are empty (dropped). The completions
of user_oriented_task_231 start with "=" and became "#ERROR!" / "#N/A" in its 3 records; import next to the pairs
file with --keep_stored_text (the stored text is kept), or alone.

    git -C open-instruct show HEAD:human_eval/data/eval_annotations_tulu_1.xlsx > ann.xlsx
    python scripts/oi_annotations_to_csv.py ann.xlsx oi.csv
    python -m camel_jax.human_eval import --db study.sqlite oi.csv [--keep_stored_text]
"""
import csv
import datetime
import re
import sys
import xml.etree.ElementTree as ET
import zipfile

NS = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"


def _column(ref: str) -> int:
    n = 0
    for ch in re.match(r"[A-Z]+", ref).group(0):
        n = n * 26 + ord(ch) - 64
    return n - 1


def read_sheet(path: str) -> list[list[str]]:
    """The first worksheet's rows as strings (shared and inline strings resolved)."""
    with zipfile.ZipFile(path) as z:
        shared = []
        if "xl/sharedStrings.xml" in z.namelist():
            for si in ET.fromstring(z.read("xl/sharedStrings.xml")).iter(NS + "si"):
                shared.append("".join(t.text or "" for t in si.iter(NS + "t")))
        sheet = ET.fromstring(z.read("xl/worksheets/sheet1.xml"))
    rows = []
    for r in sheet.iter(NS + "row"):
        cells = {}
        for c in r.iter(NS + "c"):
            v = c.find(NS + "v")
            if c.get("t") == "s":
                value = shared[int(v.text)]
            elif c.get("t") == "inlineStr":
                value = "".join(t.text or "" for t in c.iter(NS + "t"))
            else:
                value = v.text if v is not None else ""
            cells[_column(c.get("r"))] = value
        rows.append([cells.get(i, "") for i in range(max(cells) + 1)] if cells else [])
    return rows


def judgements(src: str) -> tuple[list[str], list[dict], int]:
    """The sheet's header, its judgement records (timestamps back to text) and its row count."""
    header, *rows = read_sheet(src)
    out = []
    for row in rows:
        row = row + [""] * (len(header) - len(row))
        record = dict(zip(header, row))
        if not record.get("preference"):
            continue
        try:
            seconds = round(float(record["timestamp"]) * 86400)
            record["timestamp"] = (datetime.datetime(1899, 12, 30) + datetime.timedelta(seconds=seconds)).strftime(
                "%Y-%m-%d %H:%M:%S")
        except ValueError:
            pass  # already text
        out.append(record)
    return header, out, len(rows)


def main(src: str, dst: str) -> None:
    header, out, n_rows = judgements(src)
    with open(dst, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=header)
        writer.writeheader()
        writer.writerows(out)
    print(f"{len(out)} judgements of {n_rows} rows -> {dst}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python scripts/oi_annotations_to_csv.py eval_annotations_tulu_1.xlsx out.csv")
    main(sys.argv[1], sys.argv[2])
