"""The study's database: pairs, annotators, who is assigned what, each annotator's current answer, every submission.

SQLite in WAL mode, one connection per call (so per request), `busy_timeout` for two annotators writing at once,
and every write committed before the call returns: the app replies only after its answer is in the database file's
log, so a SIGKILL loses nothing. Answers, imports and sign-ins commit with `synchronous=FULL` (fsynced: a power
cut loses nothing either); choosing a side or an assignment commits with NORMAL (no fsync of its own, it is made
durable by the next FULL commit, and a lost one is re-derived the same way from the seed). Why not open-instruct's way (see human_eval_anchors.md §2): it shuffled a shared
list per request and trusted the browser to post back which model was A; here the side is a deterministic seeded
hash of (annotator, pair), written when the pair is first shown and read back on submit. Going back and changing
an answer updates the one row per (annotator, pair) (UPSERT) while `events` keeps every submission, so the analysis
can count the latest answer (`annotations()`) and the audit trail can count all of them, with the seconds each
spent on the page (Label Studio's `lead_time`).

Assignment: the pairs are put in one seeded random order; a share `overlap` of them, drawn by a second seeded hash
(so they are spread through that order, and a study stopped early still has about that share doubly annotated), is
needed by two annotators, the rest by one. An annotator is topped up to `batch` unanswered items from that order,
skipping pairs they hold or that have all their annotators, inside one write transaction, so two people signing in
at once never take the same single-annotator pair.
"""
from __future__ import annotations

import contextlib
import datetime
import hashlib
import os
import secrets
import sqlite3

from camel_jax.cli import UsageError
from camel_jax.human_eval.pairs import Pair, pair_id
from camel_jax.human_eval.records import ACCEPTABLE, PREFERENCES, Annotation

TIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f"  # UTC, sorts as text; open-instruct's format plus microseconds
FLAGS = ("", "good", "bad", "hard")  # open-instruct's "interesting / invalid / too hard for me"

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pairs (
  pair_id TEXT PRIMARY KEY, position INTEGER NOT NULL, instance_id TEXT NOT NULL, prompt TEXT NOT NULL,
  model_1 TEXT NOT NULL, completion_1 TEXT NOT NULL, model_2 TEXT NOT NULL, completion_2 TEXT NOT NULL,
  rank TEXT NOT NULL, need INTEGER NOT NULL DEFAULT 1);
CREATE TABLE IF NOT EXISTS annotators (name TEXT PRIMARY KEY, created TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
  token TEXT PRIMARY KEY, annotator TEXT NOT NULL REFERENCES annotators(name), csrf TEXT NOT NULL,
  created TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS assignments (
  annotator TEXT NOT NULL REFERENCES annotators(name), pair_id TEXT NOT NULL REFERENCES pairs(pair_id),
  position INTEGER NOT NULL, model_a TEXT, shown TEXT, viewed TEXT, PRIMARY KEY (annotator, pair_id));
CREATE TABLE IF NOT EXISTS answers (
  annotator TEXT NOT NULL, pair_id TEXT NOT NULL, model_a TEXT NOT NULL, model_b TEXT NOT NULL,
  a_acceptable TEXT NOT NULL, b_acceptable TEXT NOT NULL, preference TEXT NOT NULL, flag TEXT NOT NULL,
  comment TEXT NOT NULL, first_time TEXT NOT NULL, time TEXT NOT NULL, PRIMARY KEY (annotator, pair_id),
  FOREIGN KEY (annotator, pair_id) REFERENCES assignments(annotator, pair_id));
CREATE TABLE IF NOT EXISTS events (
  id INTEGER PRIMARY KEY AUTOINCREMENT, time TEXT NOT NULL, annotator TEXT NOT NULL, pair_id TEXT NOT NULL,
  model_a TEXT NOT NULL, model_b TEXT NOT NULL, a_acceptable TEXT NOT NULL, b_acceptable TEXT NOT NULL,
  preference TEXT NOT NULL, flag TEXT NOT NULL, comment TEXT NOT NULL, source TEXT NOT NULL, seconds REAL);
CREATE INDEX IF NOT EXISTS assignments_by_pair ON assignments (pair_id);
CREATE INDEX IF NOT EXISTS answers_by_pair ON answers (pair_id);
"""


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime(TIME_FORMAT)


def _hash(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


class Store:
    """The study database at `path` (created on first use); every method opens, commits and closes its own
    connection, so the object is safe to share between the server's request threads."""

    def __init__(self, path: str, seed: str = "0"):
        self.path = path
        if os.path.isdir(path):
            raise UsageError(f"{path}: is a directory, expected an SQLite file")
        if not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            raise UsageError(f"{path}: its directory does not exist")
        try:
            con = sqlite3.connect(path, timeout=10, isolation_level=None)
            try:  # WAL is a property of the file: set once, outside a transaction, it persists
                con.execute("PRAGMA busy_timeout=10000")
                con.execute("PRAGMA journal_mode=WAL")
                con.executescript("BEGIN IMMEDIATE;" + SCHEMA + "COMMIT;")
            finally:
                con.close()
            # Held open, unused: the per-call connections then never close the *last* connection, which would
            # checkpoint and delete the WAL (an fsync per call); SQLite still checkpoints every 1000 pages.
            self._keeper = sqlite3.connect(path, check_same_thread=False)
            self._keeper.execute("SELECT 1 FROM meta LIMIT 1").fetchall()
            with self._connect() as con:
                con.execute("INSERT OR IGNORE INTO meta VALUES ('seed', ?)", (seed,))
        except sqlite3.DatabaseError as e:
            raise UsageError(f"{path}: not a study database ({e})") from None
        self.seed = self.meta("seed")

    @contextlib.contextmanager
    def _connect(self, write: bool = True, durable: bool = True):
        """One connection; a write transaction starts IMMEDIATE (takes the write lock up front, so a concurrent
        writer waits on busy_timeout instead of failing on upgrade) and commits before the block is left,
        fsynced when `durable`."""
        con = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        try:
            con.row_factory = sqlite3.Row
            con.execute("PRAGMA busy_timeout=10000")
            con.execute("PRAGMA synchronous=" + ("FULL" if durable else "NORMAL"))
            con.execute("PRAGMA foreign_keys=ON")
            con.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
        finally:
            con.close()

    def meta(self, key: str) -> str | None:
        with self._connect(write=False) as con:
            row = con.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    # -- pairs ---------------------------------------------------------------------------------------------------
    def add_pairs(self, pairs: list[Pair]) -> int:
        """Load pairs (again after a restart: the same pairs are a no-op); returns how many were new. A pair id
        already stored with other text is an error: the study's answers refer to what was shown."""
        new = 0
        with self._connect() as con:
            start = con.execute("SELECT COALESCE(MAX(position), -1) + 1 FROM pairs").fetchone()[0]
            for p in pairs:
                new += self._add_pair(con, p, start + new)
        return new

    def _add_pair(self, con, p: Pair, position: int) -> int:
        old = con.execute("SELECT * FROM pairs WHERE pair_id=?", (p.pair_id,)).fetchone()
        if old is not None:
            stored = {old["model_1"]: old["completion_1"], old["model_2"]: old["completion_2"]}
            if stored != {p.model_1: p.completion_1, p.model_2: p.completion_2} or \
                    (old["prompt"] and p.prompt and old["prompt"] != p.prompt):
                raise UsageError(f"{self.path}: pair {p.pair_id!r} is stored with another prompt or completions "
                                 f"than the one given; use a new --db for other pairs")
            if p.prompt and not old["prompt"]:  # imported without its prompt; the pairs file has it
                con.execute("UPDATE pairs SET prompt=? WHERE pair_id=?", (p.prompt, p.pair_id))
            return 0
        con.execute("INSERT INTO pairs VALUES (?,?,?,?,?,?,?,?,?,1)",
                    (p.pair_id, position, p.instance_id, p.prompt, p.model_1, p.completion_1, p.model_2,
                     p.completion_2, _hash(self.seed, "rank", p.pair_id)))
        return 1

    def pair(self, pid: str) -> Pair:
        with self._connect(write=False) as con:
            row = con.execute("SELECT * FROM pairs WHERE pair_id=?", (pid,)).fetchone()
        return _pair(row)

    def count_pairs(self) -> int:
        with self._connect(write=False) as con:
            return con.execute("SELECT COUNT(*) FROM pairs").fetchone()[0]

    def set_overlap(self, overlap: float) -> None:
        """A share `overlap` of the pairs (chosen by a seeded hash) needs two annotators, the rest one."""
        if not 0.0 <= overlap <= 1.0:
            raise UsageError(f"--overlap {overlap}: expected a share between 0 and 1")
        with self._connect() as con:
            ids = sorted((r[0] for r in con.execute("SELECT pair_id FROM pairs")),
                         key=lambda pid: _hash(self.seed, "double", pid))
            doubles = ids[:round(overlap * len(ids))]
            con.execute("UPDATE pairs SET need=1")
            con.executemany("UPDATE pairs SET need=2 WHERE pair_id=?", [(pid,) for pid in doubles])
            con.execute("INSERT OR REPLACE INTO meta VALUES ('overlap', ?)", (str(overlap),))

    # -- annotators and sessions ---------------------------------------------------------------------------------
    def sign_in(self, name: str) -> tuple[str, str]:
        """(session token, CSRF token) for `name`, creating the annotator on first sign-in."""
        token, csrf = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        with self._connect() as con:
            con.execute("INSERT OR IGNORE INTO annotators VALUES (?, ?)", (name, now()))
            con.execute("INSERT INTO sessions VALUES (?, ?, ?, ?)", (token, name, csrf, now()))
        return token, csrf

    def session(self, token: str | None) -> tuple[str, str] | None:
        """(annotator, CSRF token) of a session token, None when unknown."""
        if not token:
            return None
        with self._connect(write=False) as con:
            row = con.execute("SELECT annotator, csrf FROM sessions WHERE token=?", (token,)).fetchone()
        return (row[0], row[1]) if row else None

    def sign_out(self, token: str) -> None:
        with self._connect() as con:
            con.execute("DELETE FROM sessions WHERE token=?", (token,))

    # -- assignment and sides ------------------------------------------------------------------------------------
    def assign(self, annotator: str, batch: int) -> int:
        """Top `annotator` up to `batch` unanswered assigned pairs; returns how many were added."""
        with self._connect(durable=False) as con:
            open_ = con.execute("SELECT COUNT(*) FROM assignments s WHERE annotator=? AND NOT EXISTS (SELECT 1 "
                                "FROM answers a WHERE a.annotator=s.annotator AND a.pair_id=s.pair_id)",
                                (annotator,)).fetchone()[0]
            want = batch - open_
            if want <= 0:
                return 0
            rows = con.execute(
                "SELECT p.pair_id FROM pairs p WHERE p.pair_id NOT IN (SELECT pair_id FROM assignments WHERE "
                "annotator=?) AND (SELECT COUNT(*) FROM assignments s WHERE s.pair_id=p.pair_id) < p.need "
                "ORDER BY p.rank LIMIT ?", (annotator, want)).fetchall()
            start = con.execute("SELECT COALESCE(MAX(position), -1) + 1 FROM assignments WHERE annotator=?",
                                (annotator,)).fetchone()[0]
            con.executemany("INSERT INTO assignments (annotator, pair_id, position) VALUES (?, ?, ?)",
                            [(annotator, r[0], start + i) for i, r in enumerate(rows)])
        return len(rows)

    def assigned(self, annotator: str) -> list[tuple[str, bool]]:
        """(pair_id, answered?) of the annotator's assignments in the order they were given."""
        with self._connect(write=False) as con:
            rows = con.execute("SELECT s.pair_id, a.pair_id IS NOT NULL FROM assignments s LEFT JOIN answers a "
                               "ON a.annotator=s.annotator AND a.pair_id=s.pair_id WHERE s.annotator=? "
                               "ORDER BY s.position", (annotator,)).fetchall()
        return [(r[0], bool(r[1])) for r in rows]

    def side_a(self, annotator: str, pid: str, view: bool = False) -> str:
        """The model shown as A to this annotator on this pair: chosen by a seeded hash and stored the first time
        it is asked for (when the page is rendered); afterwards always the stored one. `view` (a page render)
        also records the time, from which the next submission's `seconds` on the page is counted."""
        t = now()
        with self._connect(durable=False) as con:
            row = con.execute("SELECT s.model_a, p.model_1, p.model_2 FROM assignments s JOIN pairs p USING "
                              "(pair_id) WHERE s.annotator=? AND s.pair_id=?", (annotator, pid)).fetchone()
            if row is None:
                raise KeyError(f"{pid!r} is not assigned to {annotator!r}")
            model_a = row[0]
            if model_a is None:
                model_a = row[1] if int(_hash(self.seed, "side", annotator, pid)[:8], 16) % 2 == 0 else row[2]
                con.execute("UPDATE assignments SET model_a=?, shown=? WHERE annotator=? AND pair_id=?",
                            (model_a, t, annotator, pid))
            if view:
                con.execute("UPDATE assignments SET viewed=? WHERE annotator=? AND pair_id=?", (t, annotator, pid))
        return model_a

    # -- answers -------------------------------------------------------------------------------------------------
    def submit(self, annotator: str, pid: str, a_acceptable: str, b_acceptable: str, preference: str,
               flag: str = "", comment: str = "") -> str:
        """Record an answer (A/B as this annotator was shown them, read from the database, never from the
        browser): UPSERT the current answer, append the event, commit. Returns the submission's timestamp."""
        for name, value, allowed in (("completion_a_is_acceptable", a_acceptable, ACCEPTABLE),
                                     ("completion_b_is_acceptable", b_acceptable, ACCEPTABLE),
                                     ("preference", preference, PREFERENCES), ("flag", flag, FLAGS)):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(a or '(none)' for a in allowed)}")
        t = now()
        with self._connect() as con:
            row = con.execute("SELECT s.model_a, p.model_1, p.model_2, s.viewed FROM assignments s JOIN pairs p "
                              "USING (pair_id) WHERE s.annotator=? AND s.pair_id=?", (annotator, pid)).fetchone()
            if row is None or row[0] is None:
                raise KeyError(f"{pid!r} was not shown to {annotator!r}")
            model_a = row[0]
            model_b = row[2] if model_a == row[1] else row[1]
            values = (model_a, model_b, a_acceptable, b_acceptable, preference, flag, comment)
            self._record(con, annotator, pid, values, t, "web", newer_only=False, seconds=_seconds(row[3], t))
        return t

    @staticmethod
    def _record(con, annotator: str, pid: str, values: tuple, t: str, source: str, newer_only: bool,
                seconds: float | None = None) -> None:
        """UPSERT the current answer and append the event. A web submission always replaces the answer (it is the
        latest, whatever the clock says); an imported one only when its timestamp is not older."""
        con.execute("INSERT INTO answers VALUES (?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (annotator, pair_id) DO UPDATE "
                    "SET model_a=excluded.model_a, model_b=excluded.model_b, a_acceptable=excluded.a_acceptable, "
                    "b_acceptable=excluded.b_acceptable, preference=excluded.preference, flag=excluded.flag, "
                    "comment=excluded.comment, time=excluded.time"
                    + (" WHERE excluded.time >= answers.time" if newer_only else ""),
                    (annotator, pid, *values, t, t))
        con.execute("INSERT INTO events (time, annotator, pair_id, model_a, model_b, a_acceptable, b_acceptable, "
                    "preference, flag, comment, source, seconds) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                    (t, annotator, pid, *values, source, seconds))

    def answer(self, annotator: str, pid: str) -> dict | None:
        with self._connect(write=False) as con:
            row = con.execute("SELECT * FROM answers WHERE annotator=? AND pair_id=?", (annotator, pid)).fetchone()
        return dict(row) if row else None

    def events(self) -> list[dict]:
        """Every submission in the order it was made (web and import), as stored."""
        with self._connect(write=False) as con:
            return [dict(r) for r in con.execute("SELECT * FROM events ORDER BY id")]

    def differing_text(self, annotations: list[Annotation]) -> list[Annotation]:
        """The annotations whose completions differ from those of the stored pair they belong to."""
        with self._connect(write=False) as con:
            stored = {r["pair_id"]: _pair(r) for r in con.execute("SELECT * FROM pairs")}
        return [a for a in annotations if pair_id(a.instance_id, a.model_a, a.model_b) in stored
                and _differs(stored[pair_id(a.instance_id, a.model_a, a.model_b)], a)]

    def progress(self) -> list[dict]:
        """Per annotator: name, answered, assigned, flagged (the admin view and the CLI's summary)."""
        with self._connect(write=False) as con:
            rows = con.execute(
                "SELECT n.name, (SELECT COUNT(*) FROM answers a WHERE a.annotator=n.name) AS answered, "
                "(SELECT COUNT(*) FROM assignments s WHERE s.annotator=n.name) AS assigned, "
                "(SELECT COUNT(*) FROM answers a WHERE a.annotator=n.name AND a.flag != '') AS flagged "
                "FROM annotators n ORDER BY n.name").fetchall()
        return [dict(r) for r in rows]

    def coverage(self) -> dict:
        """Pairs in total, needing two annotators, answered at least once, answered twice or more."""
        with self._connect(write=False) as con:
            return dict(con.execute(
                "SELECT COUNT(*) AS pairs, COALESCE(SUM(need = 2), 0) AS double_needed, "
                "COALESCE(SUM(k >= 1), 0) AS answered, COALESCE(SUM(k >= 2), 0) AS answered_twice FROM (SELECT "
                "p.need, (SELECT COUNT(*) FROM answers a WHERE a.pair_id=p.pair_id) AS k FROM pairs p)").fetchone())

    # -- the interface the statistics, the report and the CLI use ------------------------------------------------
    def annotations(self) -> list[Annotation]:
        """One Annotation per (annotator, pair): that annotator's latest answer, A = the side they were shown."""
        with self._connect(write=False) as con:
            rows = con.execute("SELECT a.*, p.* FROM answers a JOIN pairs p USING (pair_id) "
                               "ORDER BY a.time, a.annotator, p.position").fetchall()
        out = []
        for r in rows:
            p = _pair(r)
            out.append(Annotation(
                instance_id=p.instance_id, model_a=r["model_a"], model_b=r["model_b"],
                completion_a=p.completion(r["model_a"]), completion_b=p.completion(r["model_b"]),
                completion_a_is_acceptable=r["a_acceptable"], completion_b_is_acceptable=r["b_acceptable"],
                preference=r["preference"], evaluator=r["annotator"], timestamp=r["time"], prompt=p.prompt))
        return out

    def import_annotations(self, annotations: list[Annotation], keep_stored_text: bool = False) -> int:
        """Add annotations collected elsewhere (or exported from another study db): the pair is created from the
        record when unknown, the annotator and an assignment too (with the record's A side); the current answer is
        replaced only by a newer timestamp; every record not already in the log is appended to it. A record whose
        completions differ from the stored pair's is an error, unless `keep_stored_text` (the judgement is kept,
        on the stored text: open-instruct's released spreadsheet turned the completions of user_oriented_task_231,
        which start with "=", into "#ERROR!" / "#N/A" in its 3 records). One transaction: a bad record leaves the database as it was. Returns the new log entries."""
        added = 0
        with self._connect() as con:
            start = con.execute("SELECT COALESCE(MAX(position), -1) + 1 FROM pairs").fetchone()[0]
            for a in annotations:
                p = Pair(a.instance_id, a.prompt, a.model_a, a.completion_a, a.model_b, a.completion_b)
                pid = pair_id(a.instance_id, a.model_a, a.model_b)
                old = con.execute("SELECT * FROM pairs WHERE pair_id=?", (pid,)).fetchone()
                if old is None:
                    start += self._add_pair(con, p, start)
                elif _differs(_pair(old), a) and not keep_stored_text:
                    raise UsageError(f"annotation of {a.evaluator!r} on {pid!r} ({a.timestamp}) has other "
                                     f"completions than the pair stored in {self.path} (--keep_stored_text "
                                     f"keeps the judgement on the stored text)")
                con.execute("INSERT OR IGNORE INTO annotators VALUES (?, ?)", (a.evaluator, a.timestamp))
                pos = con.execute("SELECT COALESCE(MAX(position), -1) + 1 FROM assignments WHERE annotator=?",
                                  (a.evaluator,)).fetchone()[0]
                con.execute("INSERT OR IGNORE INTO assignments (annotator, pair_id, position, model_a, shown) "
                            "VALUES (?, ?, ?, ?, ?)",
                            (a.evaluator, pid, pos, a.model_a, a.timestamp))
                values = (a.model_a, a.model_b, a.completion_a_is_acceptable, a.completion_b_is_acceptable,
                          a.preference, "", "")
                if con.execute("SELECT 1 FROM events WHERE time=? AND annotator=? AND pair_id=? AND model_a=? "
                               "AND a_acceptable=? AND b_acceptable=? AND preference=?",
                               (a.timestamp, a.evaluator, pid, a.model_a, *values[2:5])).fetchone():
                    continue
                self._record(con, a.evaluator, pid, values, a.timestamp, "import", newer_only=True)
                added += 1
        return added


def _seconds(since: str | None, until: str) -> float | None:
    """Seconds between two of our timestamps (time on the page before a submission), None without a start."""
    if not since:
        return None
    parse = lambda s: datetime.datetime.strptime(s, TIME_FORMAT)  # noqa: E731
    return round((parse(until) - parse(since)).total_seconds(), 3)


def _differs(p: Pair, a: Annotation) -> bool:
    return p.completion(a.model_a) != a.completion_a or p.completion(a.model_b) != a.completion_b


def _pair(row) -> Pair:
    return Pair(row["instance_id"], row["prompt"], row["model_1"], row["completion_1"], row["model_2"],
                row["completion_2"])
