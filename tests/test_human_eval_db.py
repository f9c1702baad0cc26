"""The study database: sides chosen and stored by the server, assignment with overlap, UPSERT + event log, WAL,
concurrent writers, and the `annotations()` / `import_annotations()` interface the statistics rely on."""
import collections
import dataclasses
import sqlite3
import threading

import pytest

from camel_jax.cli import UsageError
from camel_jax.human_eval.db import Store
from camel_jax.human_eval.pairs import Pair, load_pairs
from camel_jax.human_eval.records import Annotation

from conftest import TEST_DATA

FIXTURE = str(TEST_DATA / "human_eval" / "pairs.jsonl")


def _pairs(n):
    return [Pair(f"i{k}", f"prompt {k}", "left", f"L{k}", "right", f"R{k}") for k in range(n)]


@pytest.fixture
def store(tmp_path):
    s = Store(str(tmp_path / "study.sqlite"))
    assert s.add_pairs(load_pairs([FIXTURE])) == 5
    return s


def test_wal_and_reloading_the_same_pairs_is_a_no_op(store, tmp_path):
    con = sqlite3.connect(store.path)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()
    assert store.add_pairs(load_pairs([FIXTURE])) == 0 and store.count_pairs() == 5
    changed = [dataclasses.replace(p, completion_1="edited") for p in load_pairs([FIXTURE])]
    with pytest.raises(UsageError, match="is stored with another prompt or completions"):
        store.add_pairs(changed)
    bad = tmp_path / "not.sqlite"
    bad.write_text("hello, not sqlite" * 100)
    with pytest.raises(UsageError, match="not a study database"):
        Store(str(bad))


def test_side_is_seeded_per_annotator_and_pair_and_stored_when_first_shown(tmp_path):
    s = Store(str(tmp_path / "s.sqlite"))
    s.add_pairs(_pairs(60))
    s.set_overlap(1.0)
    first = collections.Counter()
    for who in ("ann", "bob"):
        s.sign_in(who)
        s.assign(who, 60)
        for pid, _ in s.assigned(who):
            first[s.side_a(who, pid)] += 1
    assert 40 <= first["left"] <= 80  # randomised: neither the file's order nor one side for everyone
    sides = {pid: s.side_a("ann", pid) for pid, _ in s.assigned("ann")}
    assert sides != {pid: s.side_a("bob", pid) for pid, _ in s.assigned("bob")}
    again = Store(s.path)  # reopened: the stored side, not a new draw
    assert {pid: again.side_a("ann", pid) for pid, _ in again.assigned("ann")} == sides
    con = sqlite3.connect(s.path)
    assert con.execute("SELECT COUNT(*) FROM assignments WHERE model_a IS NOT NULL AND shown IS NOT NULL"
                       ).fetchone()[0] == 120
    # Another seed draws other sides (the seed is the study's, recorded in its db).
    other = Store(str(tmp_path / "t.sqlite"), seed="7")
    other.add_pairs(_pairs(60))
    other.set_overlap(1.0)
    other.sign_in("ann")
    other.assign("ann", 60)
    assert {pid: other.side_a("ann", pid) for pid, _ in other.assigned("ann")} != sides


def test_overlap_share_is_annotated_by_two_and_nobody_twice(tmp_path):
    s = Store(str(tmp_path / "s.sqlite"))
    s.add_pairs(_pairs(20))
    s.set_overlap(0.25)
    assert s.coverage()["double_needed"] == 5
    with sqlite3.connect(s.path) as con:  # the doubles are spread through the assignment order, not its head
        needs = [n for (n,) in con.execute("SELECT need FROM pairs ORDER BY rank")]
    assert needs[:5] != [2] * 5 and sum(needs) == 25
    for who in ("a", "b", "c"):
        s.sign_in(who)
    for _ in range(4):  # annotators come back for batches in turn until the pool is empty
        for who in ("a", "b", "c"):
            for pid, answered in s.assigned(who):
                if not answered:
                    s.side_a(who, pid)
                    s.submit(who, pid, "yes", "no", "tie")
            s.assign(who, 4)
    per_pair = collections.Counter(a.instance_id for a in s.annotations())
    assert sorted(collections.Counter(per_pair.values()).items()) == [(1, 15), (2, 5)]
    assert len({(a.instance_id, a.evaluator) for a in s.annotations()}) == 25
    assert s.assign("a", 4) == 0
    assert s.coverage() == {"pairs": 20, "double_needed": 5, "answered": 20, "answered_twice": 5}
    assert sum(r["answered"] for r in s.progress()) == 25


def test_changing_an_answer_updates_it_and_logs_both(store):
    store.sign_in("ann")
    store.assign("ann", 2)
    pid = store.assigned("ann")[0][0]
    with pytest.raises(KeyError, match="was not shown"):
        store.submit("ann", pid, "yes", "yes", "tie")  # a side must have been chosen (page shown) first
    model_a = store.side_a("ann", pid, view=True)
    t1 = store.submit("ann", pid, "yes", "no", "a-is-better")
    t2 = store.submit("ann", pid, "no", "no", "b-is-slightly-better", "hard", "unsure </pre>")
    assert t2 > t1
    (a,) = store.annotations()
    assert (a.model_a, a.completion_a_is_acceptable, a.preference, a.timestamp, a.evaluator) == (
        model_a, "no", "b-is-slightly-better", t2, "ann")
    assert a.completion_a == store.pair(pid).completion(model_a) and a.prompt == store.pair(pid).prompt
    log = store.events()
    assert [(e["preference"], e["time"], e["flag"], e["source"]) for e in log] == [
        ("a-is-better", t1, "", "web"), ("b-is-slightly-better", t2, "hard", "web")]
    assert 0 <= log[0]["seconds"] <= log[1]["seconds"] < 60  # time on the page since it was rendered
    assert store.answer("ann", pid)["first_time"] == t1
    with pytest.raises(ValueError, match="preference must be one of"):
        store.submit("ann", pid, "yes", "no", "a-is-best")
    with pytest.raises(KeyError, match="not assigned"):
        store.side_a("bob", pid)


def test_two_annotators_writing_at_once_lose_nothing(tmp_path):
    s = Store(str(tmp_path / "s.sqlite"))
    s.add_pairs(_pairs(12))
    s.set_overlap(1.0)
    errors = []

    def work(who):
        try:
            s.sign_in(who)
            s.assign(who, 12)
            for pid, _ in s.assigned(who):
                s.side_a(who, pid)
                s.submit(who, pid, "yes", "yes", "tie")
        except Exception as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(w,)) for w in ("ann", "bob")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(s.annotations()) == 24 and len(s.events()) == 24


def _ann(evaluator, ts, pref="tie", iid="x1", a="m1", b="m2"):
    return Annotation(iid, a, b, f"text of {a}", f"text of {b}", "yes", "no", pref, evaluator, ts, "the prompt")


def test_import_keeps_the_latest_answer_and_logs_every_submission(tmp_path):
    s = Store(str(tmp_path / "s.sqlite"))
    rows = [_ann("se", "2023-05-18 19:57:00", "a-is-better"), _ann("se", "2023-05-19 10:00:00", "tie"),
            _ann("yi", "2023-05-18 20:00:00", "b-is-better", a="m2", b="m1"),
            _ann("se", "2023-05-18 08:00:00", "a-is-better", iid="x2")]
    assert s.import_annotations(rows) == 4
    assert s.import_annotations(rows) == 0  # the same records again add nothing
    got = {(a.evaluator, a.instance_id): a for a in s.annotations()}
    assert got[("se", "x1")].preference == "tie" and got[("se", "x1")].timestamp == "2023-05-19 10:00:00"
    assert got[("yi", "x1")].model_a == "m2" and got[("yi", "x1")].completion_a == "text of m2"
    assert len(got) == 3 and len(s.events()) == 4 and s.count_pairs() == 2
    assert {e["source"] for e in s.events()} == {"import"} and {e["seconds"] for e in s.events()} == {None}
    # An older record does not replace a newer answer, but is logged.
    assert s.import_annotations([_ann("se", "2023-05-01 00:00:00", "b-is-better")]) == 1
    assert {(a.evaluator, a.instance_id): a for a in s.annotations()}[("se", "x1")].preference == "tie"
    # Completions that differ from the stored pair's are refused, and nothing of that batch is kept.
    clash = dataclasses.replace(_ann("zz", "2023-06-01 00:00:00"), completion_a="other")
    with pytest.raises(UsageError, match="has other completions"):
        s.import_annotations([_ann("new", "2023-06-01 00:00:00"), clash])
    assert "new" not in {a.evaluator for a in s.annotations()}
