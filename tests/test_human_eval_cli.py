"""`python -m camel_jax.human_eval`: import/export round trips in both formats, errors as one `prog: error:` line
naming the file and line (exit 2), and `stats`."""
import json
import socket

import pytest

from camel_jax.human_eval.__main__ import main
from camel_jax.human_eval.db import Store
from camel_jax.human_eval.pairs import load_pairs
from camel_jax.human_eval.records import Annotation, read_annotations, write_annotations

from conftest import TEST_DATA

FIXTURE = str(TEST_DATA / "human_eval" / "pairs.jsonl")
OI_EXCERPT = str(TEST_DATA / "human_eval" / "oi_annotations.excerpt.csv")  # open-instruct's released rows


def _annotations():
    tricky = 'line one\n"quoted", comma\r\n</pre><script>alert(1)</script>\nünïcode ✓'
    return [
        Annotation("user_oriented_task_2", "chatgpt", "tulu_65B", "text of chatgpt", tricky, "yes", "no",
                   "a-is-slightly-better", "se", "2023-05-18 19:57:01", "Rewrite the text.\n"),
        Annotation("user_oriented_task_2", "tulu_65B", "chatgpt", tricky, "text of chatgpt", "no", "no", "tie", "yi",
                   "2023-05-18 20:00:00.250000", "Rewrite the text.\n"),
        Annotation("vicuna_1", "tulu_7B", "tulu_65B", "seven", "sixty-five", "yes", "yes", "b-is-better", "se",
                   "2023-05-19 08:00:00", ""),
    ]


def test_import_export_round_trip_in_both_formats(tmp_path, capsys):
    source = tmp_path / "collected.jsonl"
    write_annotations(str(source), _annotations())
    db1, db2 = str(tmp_path / "one.sqlite"), str(tmp_path / "two.sqlite")
    assert main(["import", "--db", db1, str(source)]) == 0
    assert "imported 3 annotations" in capsys.readouterr().out
    assert main(["export", "--db", db1, "--out", str(tmp_path / "out.csv")]) == 0
    assert main(["import", "--db", db2, str(tmp_path / "out.csv")]) == 0
    assert main(["export", "--db", db2, "--out", str(tmp_path / "again.jsonl")]) == 0
    key = lambda a: (a.evaluator, a.instance_id)  # noqa: E731
    assert sorted(read_annotations(str(tmp_path / "again.jsonl")), key=key) == sorted(_annotations(), key=key)
    assert sorted(read_annotations(str(tmp_path / "out.csv")), key=key) == sorted(_annotations(), key=key)
    assert main(["import", "--db", db2, str(tmp_path / "again.jsonl")]) == 0  # the same records again
    assert "(0 new submissions in the log)" in capsys.readouterr().out
    assert len(Store(db2).events()) == 3
    assert main(["import", "--db", str(tmp_path / "oi.sqlite"), OI_EXCERPT]) == 0  # a fresh db takes their text
    assert len(Store(str(tmp_path / "oi.sqlite")).annotations()) == 7


def test_imported_annotations_join_the_pairs_of_a_served_file(tmp_path, capsys):
    """An export of open-instruct's app (same completions) lands on the pairs loaded from the comparison file."""
    db = str(tmp_path / "s.sqlite")
    store = Store(db)
    pairs = load_pairs([FIXTURE])
    store.add_pairs(pairs)
    p = pairs[0]
    ann = Annotation(p.instance_id, p.model_2, p.model_1, p.completion_2, p.completion_1, "yes", "no", "tie", "se",
                     "2023-05-18 19:57:00")
    write_annotations(str(tmp_path / "oi.csv"), [ann])
    assert main(["import", "--db", db, str(tmp_path / "oi.csv")]) == 0
    assert store.count_pairs() == 5
    (got,) = store.annotations()
    assert got.prompt == p.prompt and got.model_a == p.model_2


def test_open_instructs_released_annotations_import_as_they_were_made(tmp_path, capsys, shared_data):
    """9 rows of open-instruct's eval_annotations_tulu_1.xlsx: two re-submissions (in its app the second one even
    saw the sides swapped), two doubly annotated items, and a completion its spreadsheet turned into "#ERROR!"."""
    db = str(tmp_path / "s.sqlite")
    Store(db).add_pairs(load_pairs([str(shared_data / "tulu_human_eval" / "eval_instances_tulu_1.jsonl")]))
    assert main(["import", "--db", db, OI_EXCERPT]) == 2
    assert "error: annotation of 'al' on 'user_oriented_task_231:chatgpt|tulu_65B'" in capsys.readouterr().err
    assert Store(db).events() == []  # refused whole
    assert main(["import", "--db", db, OI_EXCERPT, "--keep_stored_text"]) == 0
    assert "1 of them had other completions than the stored pairs" in capsys.readouterr().out
    store = Store(db)
    got = {(a.evaluator, a.instance_id): a for a in store.annotations()}
    assert len(store.events()) == 9 and len(got) == 7 and store.count_pairs() == 996
    yu = got[("yu", "user_oriented_task_143")]  # the later of its two submissions, with that one's sides
    assert (yu.timestamp, yu.model_a) == ("2023-05-20 03:32:40", "chatgpt")
    al = got[("al", "user_oriented_task_231")]
    assert "#ERROR!" not in al.completion_a + al.completion_b and al.prompt


@pytest.mark.parametrize("argv, expected", [
    (["serve", "--db", "{tmp}/x.sqlite", "--pairs", "{bad}"], "human_eval serve: error: {bad}:2: not JSON"),
    (["serve", "--db", "{tmp}/x.sqlite", "--pairs", FIXTURE, "--overlap", "1.5"],
     "human_eval serve: error: --overlap 1.5: expected a share between 0 and 1"),
    (["serve", "--db", "{tmp}/x.sqlite"], "human_eval serve: error: --db {tmp}/x.sqlite holds no pairs yet"),
    (["export", "--db", "{tmp}/absent.sqlite", "--out", "{tmp}/o.jsonl"],
     "human_eval export: error: --db {tmp}/absent.sqlite: no such file"),
    (["import", "--db", "{tmp}/x.sqlite", "{badann}"], "human_eval import: error: {badann}:2: field 'preference' is"),
    (["import", "--db", "{tmp}/x.sqlite", "{tmp}/a.txt"], "human_eval import: error: {tmp}/a.txt: expected a .jsonl"),
    (["stats", "--db", "{tmp}/x.sqlite", "--annotation", "median"], "human_eval stats: error: argument --annotation"),
    (["export", "--db", "x", "--output", "y"], "human_eval export: error: unrecognized flag --output"),
    (["serve", "--db", "{tmp}/x.sqlite", "--pairs", FIXTURE, "--port", "{busy}"],
     "human_eval serve: error: --host 127.0.0.1 --port {busy}: cannot listen there (Address already in use)"),
])
def test_mistakes_are_one_line_naming_the_file_and_line(tmp_path, capsys, argv, expected):
    bad = tmp_path / "pairs.jsonl"
    bad.write_text(open(FIXTURE).readline() + "{oops\n")
    rows = [json.dumps({**a.__dict__}) for a in _annotations()[:2]]
    badann = tmp_path / "ann.jsonl"
    badann.write_text(rows[0] + "\n" + rows[1].replace('"tie"', '"draw"') + "\n")
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    fill = dict(tmp=tmp_path, bad=bad, badann=badann, busy=busy.getsockname()[1])
    argv = [a.format(**fill) for a in argv]
    code = None
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    finally:
        busy.close()
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith(expected.format(**fill)) and err.count("\n") == 1


def test_stats_prints_the_summary_of_the_database(tmp_path, capsys):
    from camel_jax.human_eval import stats

    db = str(tmp_path / "s.sqlite")
    Store(db).import_annotations(_annotations())
    annotations = Store(db).annotations()
    for mode in ("first", "latest"):
        assert main(["stats", "--db", db, "--annotation", mode, "--json"]) == 0
        assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(
            stats.summarize(annotations, annotation=mode)))
    assert main(["stats", "--db", db]) == 0
    assert capsys.readouterr().out.strip() == stats.render_text(stats.summarize(annotations, "first")).strip()
