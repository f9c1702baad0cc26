"""Raw readers: every bad record is named by file and line (or index), or skipped and counted; tallies reconcile."""
import gzip
import json

import pytest

from camel_jax.data import records as R


def _write(tmp_path, name, data: bytes):
    p = tmp_path / name
    p.write_bytes(data)
    return str(p)


JSONL = b'{"a": "1"}\n\n{"a": "2"\n{"a": "\xff"}\n{"b": "4"}\n'


def test_jsonl_invalid_json_names_file_and_line(tmp_path):
    path = _write(tmp_path, "x.jsonl", JSONL)
    with pytest.raises(R.RecordError, match=r"x\.jsonl: line 3: invalid_json"):
        list(R.read_jsonl(path, R.Tally()))


def test_jsonl_non_utf8_names_line(tmp_path):
    path = _write(tmp_path, "x.jsonl", b'{"a": "1"}\n{"a": "\xff"}\n')
    with pytest.raises(R.RecordError, match=r"x\.jsonl: line 2: non_utf8: byte 0xff"):
        list(R.read_jsonl(path, R.Tally()))


def test_jsonl_skip_counts_by_reason_and_reconciles(tmp_path):
    path = _write(tmp_path, "x.jsonl", JSONL)
    t = R.Tally("x", skip_bad=True)
    good = []
    for rec in R.read_jsonl(path, t):
        v = t.attempt(rec, lambda d: R.require(d, "a"))
        if v is not None:
            good.append((rec.loc, v))
            t.converted += 1
    assert good == [("line 1", ["1"])]
    assert t.read == 4 and dict(t.bad) == {"invalid_json": 1, "non_utf8": 1, "missing_field": 1}
    t.check()
    assert "bad (skipped) 3" in t.format()
    t.read += 1
    with pytest.raises(RuntimeError, match="read 5"):
        t.check()


def test_missing_field_error_names_line(tmp_path):
    path = _write(tmp_path, "x.jsonl", b'{"a": "1"}\n{"b": 2}\n')
    t = R.Tally()
    with pytest.raises(R.RecordError, match=r"x\.jsonl: line 2: missing_field: no field 'a'"):
        for rec in R.read_jsonl(path, t):
            t.attempt(rec, lambda d: R.require(d, "a"))
    with pytest.raises(R.BadRecord, match="bad_type"):
        R.require({"a": 3}, "a")
    assert R.require({"a": None}, "a", "b", optional=("a", "b")) == [None, None]


LIST = (b'[\n  {\n    "a": "0"\n  },\n  {\n    "a": "1",,\n  },\n  {\n    "a": "2"\n  },\n'
        b'  {\n    "a": "\xfe"\n  },\n  {\n    "a": "4"\n  }\n]\n')


def test_json_list_strict_errors_name_record_and_line(tmp_path):
    path = _write(tmp_path, "l.json", LIST.replace(b"\xfe", b"3"))
    with pytest.raises(R.RecordError, match=r"l\.json: record 1 \(line 5\): invalid_json"):
        list(R.read_json_list(path, R.Tally()))
    path = _write(tmp_path, "m.json", LIST.replace(b",,", b","))
    with pytest.raises(R.RecordError, match=r"m\.json: line 12: non_utf8"):
        list(R.read_json_list(path, R.Tally()))


def test_json_list_skip_resynchronises(tmp_path):
    path = _write(tmp_path, "l.json", LIST)
    t = R.Tally(skip_bad=True)
    got = [(r.loc, r.data["a"]) for r in R.read_json_list(path, t)]
    assert got == [("record 0 (line 2)", "0"), ("record 2 (line 8)", "2"), ("record 4 (line 14)", "4")]
    assert t.read == 5 and dict(t.bad) == {"invalid_json": 1, "non_utf8": 1}


def test_json_list_unclosed_and_not_a_list(tmp_path):
    t = R.Tally(skip_bad=True)
    assert [r.data for r in R.read_json_list(_write(tmp_path, "u.json", b'[{"a": 1}, {"a": 2}'), t)] == \
        [{"a": 1}]
    assert t.bad["invalid_json"] == 1 and t.notes  # the unterminated tail cannot be resynchronised on one line
    with pytest.raises(R.RecordError, match="expected a JSON list"):
        list(R.read_json_list(_write(tmp_path, "o.json", b'{"a": 1}'), R.Tally()))


def test_read_records_dispatch_and_gzip(tmp_path):
    p = tmp_path / "g.jsonl.gz"
    with gzip.open(p, "wb") as f:
        f.write(b'{"a": 1}\n{"a": 2}\n')
    assert [r.data["a"] for r in R.read_records(str(p), R.Tally())] == [1, 2]
    q = _write(tmp_path, "q.json", b' [{"a": 1}]')
    assert [r.data for r in R.read_records(q, R.Tally())] == [{"a": 1}]


def test_tsv_rows(tmp_path):
    path = _write(tmp_path, "t.tsv", b"q1\ta1\tc1\r\nq2\ta2\n\nq3\ta3\tc\xff\n")
    with pytest.raises(R.RecordError, match=r"t\.tsv: line 2: missing_field"):
        list(R.read_tsv(path, R.Tally(), 3))
    t = R.Tally(skip_bad=True)
    assert [r.data for r in R.read_tsv(path, t, 3)] == [["q1", "a1", "c1"]]
    assert dict(t.bad) == {"missing_field": 1, "non_utf8": 1} and t.read == 3


def test_json_document_errors(tmp_path):
    with pytest.raises(R.RecordError, match=r"d\.json: line 2: invalid_json"):
        R.read_json_document(_write(tmp_path, "d.json", b'{"a":\n ]}'))
    assert R.read_json_document(_write(tmp_path, "e.json", b'{"u": NaN}'))["u"] != 0


def test_check_messages():
    with pytest.raises(R.BadRecord, match="empty_conversation"):
        R.check_messages([])
    with pytest.raises(R.BadRecord, match="unknown_role.*'bot'"):
        R.check_messages([{"role": "user", "content": "x"}, {"role": "bot", "content": "y"}])
    with pytest.raises(R.BadRecord, match="bad_type"):
        R.check_messages([{"role": "user", "content": 3}])


def test_write_jsonl_is_atomic(tmp_path):
    out = tmp_path / "sub" / "o.jsonl"

    def gen():
        yield {"id": "a", "text": "é"}
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        R.write_jsonl(str(out), gen())
    assert not out.exists() and list((tmp_path / "sub").iterdir()) == []
    t = R.Tally()
    assert R.write_jsonl(str(out), iter([{"id": "a", "text": "é"}]), t) == 1 and t.written == 1
    assert json.loads(out.read_text(encoding="utf-8")) == {"id": "a", "text": "é"}
