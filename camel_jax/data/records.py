"""Reading raw json / jsonl / tsv records with errors that name the file and the line, and an account of them.

Every raw record a reader meets is counted in `Tally.read`. A record either converts (`converted`), is dropped
by a rule of the reference conversion (`dropped[reason]`: not sampled, a ShareGPT system turn, ...), or is bad
input (`bad[reason]`: invalid JSON, non-UTF-8 bytes, missing fields, unknown roles, empty conversations). Bad input
raises `RecordError` ("FILE:line N: reason: detail") unless the run was asked to `skip_bad`, in which case it is
counted. `Tally.check()` enforces read == converted + dropped + bad, so nothing vanishes silently.
`written` counts output examples, which can differ from `converted` (one OASST tree gives many paths).
"""
from __future__ import annotations

import collections
import dataclasses
import gzip
import json
import os
import zlib
from typing import Any, Callable, Iterator, Optional

BAD_REASONS = ("invalid_json", "non_utf8", "missing_field", "bad_type", "unknown_role", "empty_conversation",
               "malformed_turns")
ROLES = ("system", "user", "assistant")


class RecordError(ValueError):
    """Bad raw input; the message starts with the file and line (or record index)."""


class BadRecord(Exception):
    """Raised by converters for one record; the caller adds where it was."""

    def __init__(self, reason: str, detail: str = ""):
        assert reason in BAD_REASONS, reason
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


@dataclasses.dataclass
class Record:
    path: str
    loc: str  # "line 7" or "record 3 (line 120)"
    data: Any

    @property
    def where(self) -> str:
        return f"{self.path}: {self.loc}"


@dataclasses.dataclass
class Tally:
    dataset: str = ""
    skip_bad: bool = False
    read: int = 0
    converted: int = 0
    written: int = 0
    bad: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    dropped: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    files: collections.Counter = dataclasses.field(default_factory=collections.Counter)  # file-level events
    notes: list = dataclasses.field(default_factory=list)
    # Appended to a bad-record error: what the user can do; set by the caller, which knows its own flags.
    bad_hint: str = "use --skip_bad_records to skip and count such records"

    def reject(self, where: str, reason: str, detail: str = "") -> None:
        """Bad input at `where`: raise, or count it when skipping bad records."""
        assert reason in BAD_REASONS, reason
        if not self.skip_bad:
            raise RecordError(f"{where}: {reason}: {detail}" + (f" ({self.bad_hint})" if self.bad_hint else ""))
        self.bad[reason] += 1

    def drop(self, reason: str, n: int = 1) -> None:
        if n:
            self.dropped[reason] += n

    def attempt(self, rec: Record, fn: Callable[[Any], Any]) -> Any:
        """fn(rec.data), or None after rejecting the record if fn raises BadRecord."""
        try:
            return fn(rec.data)
        except BadRecord as e:
            self.reject(rec.where, e.reason, e.detail)
            return None

    def check(self) -> None:
        accounted = self.converted + sum(self.bad.values()) + sum(self.dropped.values())
        if self.read != accounted:
            raise RuntimeError(f"{self.dataset}: records read {self.read} != converted {self.converted} + dropped "
                               f"{dict(self.dropped)} + bad {dict(self.bad)}")

    def summary(self) -> dict:
        return {"dataset": self.dataset, "read": self.read, "converted": self.converted, "written": self.written,
                "dropped": dict(sorted(self.dropped.items())), "bad_skipped": dict(sorted(self.bad.items())),
                "files": dict(sorted(self.files.items())), "notes": list(self.notes)}

    def format(self) -> str:
        s = self.summary()
        lines = [f"{self.dataset}: read {s['read']} = converted {s['converted']} + dropped "
                 f"{sum(self.dropped.values())} + bad (skipped) {sum(self.bad.values())}; written {s['written']} "
                 f"examples"]
        for key in ("dropped", "bad_skipped", "files"):
            for reason, n in s[key].items():
                lines.append(f"  {key} {reason}: {n}")
        lines += [f"  note: {n}" for n in s["notes"]]
        return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- field checks
def require(d: Any, *fields: str, types: tuple = (str,), optional: tuple[str, ...] = ()) -> list:
    """Values of `fields` in dict `d` (None for absent `optional` ones), raising BadRecord naming the field."""
    if not isinstance(d, dict):
        raise BadRecord("bad_type", f"expected a JSON object, got {type(d).__name__}")
    out = []
    for f in fields:
        if f not in d or (d[f] is None and f not in optional):
            if f in optional:
                out.append(None)
                continue
            raise BadRecord("missing_field", f"no field {f!r} (has {sorted(d)[:8]})")
        v = d[f]
        if v is not None and not isinstance(v, types):
            raise BadRecord("bad_type", f"field {f!r} is {type(v).__name__}, expected "
                                        f"{'/'.join(t.__name__ for t in types)}")
        out.append(v)
    return out


def check_messages(messages: list) -> list:
    """Validate unified messages: non-empty, known roles, string contents."""
    if not messages:
        raise BadRecord("empty_conversation", "no messages")
    for i, m in enumerate(messages):
        if m.get("role") not in ROLES:
            raise BadRecord("unknown_role", f"message {i} has role {m.get('role')!r}")
        if not isinstance(m.get("content"), str):
            raise BadRecord("bad_type", f"message {i} content is {type(m.get('content')).__name__}")
    return messages


# ----------------------------------------------------------------------------------------------------- readers
def _open_bytes(path: str, size: int = -1) -> bytes:
    """The file's bytes (the first `size` when >= 0), .gz decompressed; a corrupt archive is a RecordError naming it."""
    try:
        with (gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")) as f:
            return f.read(size)
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise RecordError(f"{path}: not a readable gzip file ({e})") from None


def _line_of(data, offset: int) -> int:
    return data.count(b"\n" if isinstance(data, bytes) else "\n", 0, offset) + 1


def _has_surrogates(obj: Any) -> bool:
    try:
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
        return False
    except UnicodeEncodeError:
        return True


def read_jsonl(path: str, tally: Tally) -> Iterator[Record]:
    """One Record per non-blank line; bad lines are rejected (raise or count) and reading goes on."""
    for n, raw in enumerate(_open_bytes(path).split(b"\n"), start=1):
        if not raw.strip():
            continue
        tally.read += 1
        where = f"{path}: line {n}"
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            tally.reject(where, "non_utf8", f"byte {raw[e.start]:#04x} at column {e.start + 1}")
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            tally.reject(where, "invalid_json", f"{e.msg} at column {e.colno}")
            continue
        yield Record(path, f"line {n}", obj)


def read_json_list(path: str, tally: Tally) -> Iterator[Record]:
    """Elements of a top-level JSON list, parsed one by one so each error names its record and line.

    With skip_bad, parsing resynchronises at the next element that starts on a new line with the first element's
    indentation (how every published dataset file here is laid out); a file laid out otherwise stops there.
    """
    data = _open_bytes(path)
    lossy = False
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        if not tally.skip_bad:
            raise RecordError(f"{path}: line {_line_of(data, e.start)}: non_utf8: byte {data[e.start]:#04x}"
                              + (f" ({tally.bad_hint})" if tally.bad_hint else "")) from None
        text, lossy = data.decode("utf-8", errors="surrogateescape"), True
    del data
    lines = _LineCounter(text)
    dec = json.JSONDecoder()
    pos = _skip_ws(text, 0)
    if pos >= len(text) or text[pos] != "[":
        raise RecordError(f"{path}: line {lines.at(pos)}: expected a JSON list of records")
    pos = _skip_ws(text, pos + 1)
    indent = text[text.rfind("\n", 0, pos) + 1:pos] if "\n" in text[:pos] else None
    i = 0
    while pos < len(text) and text[pos] != "]":
        tally.read += 1
        loc = f"record {i} (line {lines.at(pos)})"
        try:
            obj, end = dec.raw_decode(text, pos)
            end = _skip_ws(text, end)
            if end >= len(text) or text[end] not in ",]":
                raise json.JSONDecodeError("expected ',' or ']' after a record", text, end)
        except json.JSONDecodeError as e:
            tally.reject(f"{path}: {loc}", "invalid_json", f"{e.msg} at line {e.lineno} column {e.colno}")
            nxt = -1 if indent is None else text.find("\n" + indent + "{", max(e.pos, pos + 1))
            if nxt < 0:
                tally.notes.append(f"{path}: could not resynchronise after record {i}; rest of file unread")
                return
            pos, i = nxt + 1 + len(indent), i + 1
            continue
        if lossy and _has_surrogates(obj):
            tally.reject(f"{path}: {loc}", "non_utf8", "undecodable bytes inside the record")
        else:
            yield Record(path, loc, obj)
        i += 1
        pos = _skip_ws(text, end + 1) if text[end] == "," else end
    if pos >= len(text):
        tally.reject(f"{path}: line {lines.at(pos)}", "invalid_json", "the JSON list is not closed")


class _LineCounter:
    """Line numbers of increasing offsets in O(total length), not O(offset) per query."""

    def __init__(self, text: str):
        self.text, self.pos, self.line = text, 0, 1

    def at(self, pos: int) -> int:
        if pos < self.pos:
            return _line_of(self.text, pos)
        self.line += self.text.count("\n", self.pos, pos)
        self.pos = pos
        return self.line


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def read_records(path: str, tally: Tally) -> Iterator[Record]:
    """A JSON list file or a JSON-lines file (gz allowed), told apart by the first non-blank byte."""
    head = _open_bytes(path, 4096).lstrip()
    return read_json_list(path, tally) if head.startswith(b"[") else read_jsonl(path, tally)


def read_json_document(path: str) -> Any:
    """A whole JSON document (e.g. one SuperNI task); errors name the file and line."""
    data = _open_bytes(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RecordError(f"{path}: line {_line_of(data, e.start)}: non_utf8: byte {data[e.start]:#04x}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise RecordError(f"{path}: line {e.lineno}: invalid_json: {e.msg} at column {e.colno}") from None


def read_tsv(path: str, tally: Tally, min_columns: int) -> Iterator[Record]:
    """Rows of a header-less TSV as lists of strings; short rows are `missing_field`."""
    for n, raw in enumerate(_open_bytes(path).split(b"\n"), start=1):
        raw = raw.rstrip(b"\r")
        if not raw.strip():
            continue
        tally.read += 1
        where = f"{path}: line {n}"
        try:
            cols = raw.decode("utf-8").split("\t")
        except UnicodeDecodeError as e:
            tally.reject(where, "non_utf8", f"byte {raw[e.start]:#04x} at column {e.start + 1}")
            continue
        if len(cols) < min_columns:
            tally.reject(where, "missing_field", f"{len(cols)} tab-separated columns, expected {min_columns}")
            continue
        yield Record(path, f"line {n}", cols)


def write_jsonl(path: str, examples: Iterator[dict], tally: Optional[Tally] = None) -> int:
    """Write atomically (temp file + rename) so a failed run never leaves a half-written dataset."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    n = 0
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            for ex in examples:
                f.write(json.dumps(ex, ensure_ascii=False) + "\n")
                n += 1
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    if tally is not None:
        tally.written = n
    return n
