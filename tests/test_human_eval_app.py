"""The annotators' app: request-level guards through Starlette's client, then the real thing in headless chromium
against `python -m camel_jax.human_eval serve` as a subprocess (signed in, mouse and keyboard, back and change, a
second annotator at once, hostile text, SIGKILL and restart, the database, its log and an export)."""
import dataclasses
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time

import pytest
from fastapi.testclient import TestClient

from camel_jax.human_eval.__main__ import main
from camel_jax.human_eval.app import create_app
from camel_jax.human_eval.db import Store
from camel_jax.human_eval.pairs import load_pairs, pair_id

from conftest import REPO, TEST_DATA

FIXTURE = str(TEST_DATA / "human_eval" / "pairs.jsonl")
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
PAIR = re.compile(r'name="pair_id" value="([^"]+)"')


@pytest.fixture
def client(tmp_path):
    store = Store(str(tmp_path / "study.sqlite"))
    store.add_pairs(load_pairs([FIXTURE]))
    store.set_overlap(0.4)
    return TestClient(create_app(store, batch=5)), store


def _sign_in(c, name="ann"):
    token = CSRF.search(c.get("/login").text).group(1)
    r = c.post("/login", data={"name": name, "csrf": token})
    assert r.status_code == 200 and r.url.path == "/item/1"
    return r


def test_every_post_needs_its_csrf_token(client):
    c, store = client
    assert c.get("/", follow_redirects=False).headers["location"] == "/login"
    assert c.post("/login", data={"name": "ann"}).status_code == 403  # no token
    c.get("/login")
    assert c.post("/login", data={"name": "ann", "csrf": "guessed"}).status_code == 403  # not the cookie's
    assert c.post("/login", data={"name": "ann", "csrf": "é"}).status_code == 403  # not a 500
    page = _sign_in(c).text
    good, pid = CSRF.search(page).group(1), PAIR.search(page).group(1)
    answer = {"pair_id": pid, "a": "yes", "b": "no", "preference": "tie"}
    for data in (answer, {**answer, "csrf": "x" + good}, {**answer, "csrf": "jeton-étranger"}):
        r = c.post("/item/1", data=data)
        assert r.status_code == 403 and "CSRF" in r.text
    assert c.post("/logout", data={}).status_code == 403
    assert store.annotations() == [] and store.events() == []
    other = TestClient(c.app)  # another browser without the session: the token alone is not enough
    assert other.post("/item/1", data={**answer, "csrf": good}).status_code == 403
    assert c.post("/item/1", data={**answer, "csrf": good}).status_code == 200
    assert len(store.annotations()) == 1


def test_sides_come_from_the_server_and_answers_are_validated(client):
    c, store = client
    page = _sign_in(c).text
    token, pid = CSRF.search(page).group(1), PAIR.search(page).group(1)
    r = c.post("/item/1", data={"csrf": token, "pair_id": pid, "a": "yes", "preference": "tie"})
    assert r.status_code == 400 and "Please answer all the questions: missing B acceptable?" in r.text
    assert c.post("/item/1", data={"csrf": token, "pair_id": pid, "a": "yes", "b": "maybe",
                                   "preference": "tie"}).status_code == 400
    assert c.post("/item/1", data={"csrf": token, "pair_id": "another", "a": "yes", "b": "no",
                                   "preference": "tie"}).status_code == 403
    assert store.events() == []
    pair = store.pair(pid)
    shown_a = store.side_a("ann", pid)
    assert pair.completion(shown_a) in page  # what the page showed as A is what the database recorded
    c.post("/item/1", data={"csrf": token, "pair_id": pid, "a": "yes", "b": "no", "preference": "a-is-better",
                            "model_a": "forged", "model_b": "forged"})  # model fields from a form are ignored
    (a,) = store.annotations()
    assert a.model_a == shown_a and {a.model_a, a.model_b} == {pair.model_1, pair.model_2}
    r = c.get("/login")
    assert r.status_code == 200
    assert c.post("/login", data={"name": "<script>", "csrf": CSRF.search(r.text).group(1)}).status_code == 400


def test_pages_are_self_contained_and_escape_text(client):
    c, store = client
    _sign_in(c)
    hostile = next(k for k in range(1, 6) if "hostile_1" in c.get(f"/item/{k}").text)
    r = c.get(f"/item/{hostile}")
    assert "&lt;/pre&gt;&lt;script&gt;" in r.text and "<script>document" not in r.text
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert "samesite=strict" in c.get("/login").headers["set-cookie"].lower()
    for path in ("/login", f"/item/{hostile}", "/progress", "/next"):
        html = c.get(path).text
        assert not re.search(r'(src|href)="(https?:)?//', html), path  # nothing from outside the package
    assert c.get("/static/app.js").status_code == 200 and c.get("/static/../db.py").status_code == 404
    assert c.get("/item/99").status_code == 404
    progress = c.get("/progress").text  # the admin view: per-annotator counts and the overlap's coverage
    assert "<td>ann</td><td>0</td><td>5</td><td>0</td>" in progress
    assert "0 of 5 pairs answered at least once; 0 answered twice of the 2 meant for two annotators" in \
        " ".join(progress.split())


# --- the real server in the real browser -------------------------------------------------------------------------

def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(db, port):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "camel_jax.human_eval", "serve", "--db", db, "--pairs", FIXTURE,
                             "--port", str(port), "--overlap", "0.4", "--batch", "5"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 30
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the server exited {proc.returncode}: {proc.stderr.read()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    pytest.fail("the server did not listen within 30 s")


def _answer(pg, k, keys=None, clicks=None):
    """Answer item k by keyboard (`keys`, then Enter) or by mouse (`clicks` of element ids, then Submit)."""
    assert pg.url.endswith(f"/item/{k}")
    if clicks:
        for el in clicks:
            pg.click(f"#{el}")
        pg.click("#submit")
    else:
        for key in keys:
            pg.keyboard.press(key)
        pg.keyboard.press("Enter")
    pg.wait_for_url(re.compile(rf"/(item/{k + 1}|next)$"))


def _shown(pg):
    return pg.input_value('input[name="pair_id"]'), pg.text_content("#completion-a")


def test_annotating_in_the_browser_survives_sigkill(browser, page, tmp_path):
    db = str(tmp_path / "study.sqlite")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = _serve(db, port)
    try:
        page.goto(url)
        page.fill("#name", "ann")
        page.click("#signin")
        page.wait_for_url(re.compile(r"/item/1$"))
        assert page.text_content("#progress") == "0 / 5"
        assert "1–5 preference" in page.text_content("#keys").replace("\n", " ").replace("  ", " ")
        shown = {}
        page.keyboard.press("Enter")  # nothing chosen: the browser's required-field check keeps us here
        assert page.url.endswith("/item/1")
        shown[1] = _shown(page)
        _answer(page, 1, clicks=["a-yes", "b-no", "pref-a-is-better"])  # by mouse
        shown[2] = _shown(page)
        _answer(page, 2, keys=["z", "k", "4"])  # by keyboard
        shown[3] = _shown(page)
        page.click("summary")  # flag and comment; typing in the comment box must not trigger the keys
        page.click("#flag-hard")
        page.click("#comment")
        page.keyboard.type("a 1 z")
        assert not page.is_checked("#a-yes") and not page.is_checked("#pref-a-is-better")
        page.keyboard.press("Escape")
        _answer(page, 3, keys=["a", "m", "2"])
        assert page.text_content("#progress") == "3 / 5"

        # Back twice with the arrow key, see the earlier answer, change it.
        page.keyboard.press("ArrowLeft")
        page.wait_for_url(re.compile(r"/item/3$"))
        page.keyboard.press("ArrowLeft")
        page.wait_for_url(re.compile(r"/item/2$"))
        assert page.is_checked("#a-no") and page.is_checked("#b-yes") and page.is_checked("#pref-b-is-slightly-better")
        assert page.is_visible("#answered")
        _answer(page, 2, keys=["a", "1"])

        # A second annotator at the same time, in another browser context (own cookies).
        bob = browser.new_context().new_page()
        bob.goto(url + "/login")
        bob.fill("#name", "bob")
        bob.keyboard.press("Enter")
        bob.wait_for_url(re.compile(r"/item/1$"))
        assert bob.text_content("#progress") == "0 / 2"  # overlap 0.4 of 5 pairs: 2 are for two people
        bob_shown = _shown(bob)
        _answer(bob, 1, keys=["a", "k", "3"])
        bob.context.close()

        # Hostile completions render as text: nothing ran, the characters are on the page.
        hostile = next(k for k in range(1, 6) if page.goto(f"{url}/item/{k}") and
                       "hostile_1" in page.input_value('input[name="pair_id"]'))
        texts = page.text_content("#completion-a") + page.text_content("#completion-b")
        assert "</pre><script>document.title='pwned'" in texts and "</textarea></pre><b>not bold</b>" in texts
        assert page.title().startswith(f"Item {hostile}") and page.evaluate("window.PWNED") is None
        assert page.locator("pre b").count() == 0 and "<b>hi</b>" in page.text_content("#prompt")
        page.goto(f"{url}/item/4")
        shown[4] = _shown(page)
        _answer(page, 4, clicks=["a-no", "b-no", "pref-tie"])
    finally:
        proc.send_signal(signal.SIGKILL)  # right after the replies: nothing may be lost
        proc.wait(timeout=10)

    con = sqlite3.connect(db)
    rows = con.execute("SELECT annotator, pair_id, model_a, preference, flag, comment FROM answers").fetchall()
    assert len(rows) == 5
    sides = dict(((a, p), m) for a, p, m in con.execute("SELECT annotator, pair_id, model_a FROM assignments "
                                                        "WHERE model_a IS NOT NULL"))
    events = con.execute("SELECT annotator, pair_id, preference, seconds FROM events ORDER BY id").fetchall()
    con.close()
    assert [e[2] for e in events] == ["a-is-better", "b-is-slightly-better", "a-is-slightly-better", "a-is-better",
                                      "tie", "tie"]  # item 2's first answer and its change are both logged
    assert all(e[3] >= 0 for e in events)  # seconds on the page, counted by the server
    store = Store(db)
    ann = {_pid(a): a for a in store.annotations() if a.evaluator == "ann"}
    for pid, text_a in shown.values():  # what each page showed as A is what the server stored and exported as A
        assert ann[pid].model_a == sides[("ann", pid)] and ann[pid].completion_a == text_a
    assert ann[shown[2][0]].preference == "a-is-better"  # changed, not added
    (b,) = [a for a in store.annotations() if a.evaluator == "bob"]
    assert (_pid(b), b.completion_a) == bob_shown
    assert {r[4] for r in rows if r[1] == shown[3][0]} == {"hard"}
    assert {r[5] for r in rows if r[1] == shown[3][0]} == {"a 1 z"}
    assert len({sides[("ann", pid)] == store.pair(pid).model_1 for pid, _ in shown.values()}) == 2  # both sides

    # Restart on the same database: the session, the answers and the progress are all there.
    port2 = _free_port()
    proc = _serve(db, port2)
    try:
        page.goto(f"http://127.0.0.1:{port2}/item/2")
        assert page.text_content("#progress") == "4 / 5" and page.is_checked("#pref-a-is-better")
        out = tmp_path / "export.jsonl"
        assert main(["export", "--db", db, "--out", str(out)]) == 0  # while the server holds the database
        exported = [json.loads(line) for line in out.read_text().splitlines()]
        assert exported == [dataclasses.asdict(a) for a in store.annotations()]
        assert len(exported) == 5 and {e["evaluator"] for e in exported} == {"ann", "bob"}
        assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}", e["timestamp"]) for e in exported)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)


def _pid(a):
    return pair_id(a.instance_id, a.model_a, a.model_b)
