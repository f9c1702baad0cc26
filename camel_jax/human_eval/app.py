"""The annotators' web app: sign in by name, judge one instruction's two anonymised responses, go back, change.

Plain HTML forms (they work without JavaScript) plus one small package script for the keyboard; no asset comes
from outside the package and the Content-Security-Policy forbids it, inline scripts included, so even a template
mistake cannot run a completion's `<script>`. Texts are escaped by Jinja's autoescape and shown in `<pre>`
(pre-wrap). Which model is A comes from the database (`Store.side_a`), never from the form; every POST carries the
session's CSRF token (the sign-in form a double-submit cookie), and the reply comes only after the answer is
committed. There are no passwords and no admin account: a name identifies an annotator, as in open-instruct's
study, so anyone who can reach the server can sign in under any name. That is why it binds to 127.0.0.1 unless
told otherwise (and `serve` warns when it is): beyond one machine, put it behind an authenticating proxy.
"""
from __future__ import annotations

import os
import re
import secrets
import urllib.parse

from fastapi import Depends, FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader

from camel_jax.human_eval.db import FLAGS, Store
from camel_jax.human_eval.records import PREFERENCES

HERE = os.path.dirname(os.path.abspath(__file__))
STATIC = {"app.js": "text/javascript", "app.css": "text/css"}
SESSION_COOKIE, LOGIN_COOKIE = "heval_session", "heval_login"
MAX_FORM_BYTES = 64 * 1024
NAME = re.compile(r"[\w.@ -]{1,64}")
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")

# The paper's interface, verbatim (open-instruct human_eval/templates/index.html; human_eval_anchors.md §1).
HEADER = ("Now please evaluate the two outputs based on your knowledge, preference, and any external tools "
          "(e.g., Google Search or Translate).")
ACCEPTABLE_Q = ("Is output {side} an acceptable response? An acceptable response should ① answer the user requests "
                "② have no significant errors ③ have no meaningless text (e.g., repetition).")
PREFERENCE_Q = "Please choose the response that you prefer (based on helpfulness)."
PREFERENCE_LABELS = dict(zip(PREFERENCES, ("A is clearly better", "A is slightly better", "Tie",
                                           "B is slightly better", "B is clearly better")))
FLAG_LABELS = dict(zip(FLAGS, ("No flag", "This example is interesting", "This example is invalid",
                               "This example is too hard for me")))
# Keys chosen not to fight focus (no Tab, no Space): letters and digits, arrows to move, Enter to submit.
KEYS = {"a_yes": "a", "a_no": "z", "b_yes": "k", "b_no": "m"}


class Forbidden(Exception):
    pass


def same(given: str, expected: str) -> bool:
    """Constant-time token comparison (as bytes: compare_digest refuses non-ASCII str with a TypeError)."""
    return secrets.compare_digest(given.encode(), expected.encode())


async def form(request: Request) -> dict[str, str]:
    """The url-encoded body as {field: last value}; parsed here, so no multipart package is needed."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise Forbidden("form too large")
    return {k: v[-1] for k, v in urllib.parse.parse_qs(body.decode("utf-8", "replace"),
                                                         keep_blank_values=True).items()}


def create_app(store: Store, batch: int = 20) -> FastAPI:
    """The app over `store`; each annotator is topped up to `batch` unanswered assigned pairs at a time."""
    app = FastAPI(title="camel_jax human evaluation", docs_url=None, redoc_url=None, openapi_url=None)
    env = Environment(loader=FileSystemLoader(os.path.join(HERE, "templates")), autoescape=True)

    def page(template: str, status: int = 200, **ctx) -> HTMLResponse:
        return HTMLResponse(env.get_template(template).render(**ctx), status_code=status)

    @app.middleware("http")
    async def headers(request: Request, call_next):
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.exception_handler(Forbidden)
    async def forbidden(request: Request, e: Forbidden):
        return Response(f"Forbidden: {e}\n", status_code=403, media_type="text/plain")

    def who(request: Request) -> tuple[str, str] | None:
        return store.session(request.cookies.get(SESSION_COOKIE))

    def checked(request: Request, data: dict) -> str:
        """The signed-in annotator of a POST whose CSRF token matches the session's, else 403."""
        s = who(request)
        if s is None:
            raise Forbidden("not signed in")
        if not same(data.get("csrf", ""), s[1]):
            raise Forbidden("CSRF token missing or wrong; reload the page")
        return s[0]

    def to(url: str) -> RedirectResponse:
        return RedirectResponse(url, status_code=303)

    @app.get("/static/{name}")
    def static(name: str):
        if name not in STATIC:
            return Response("not found\n", status_code=404, media_type="text/plain")
        return FileResponse(os.path.join(HERE, "static", name), media_type=STATIC[name])

    @app.get("/")
    def index(request: Request):
        return to("/next" if who(request) else "/login")

    def login_page(error: str = "") -> HTMLResponse:
        token = secrets.token_urlsafe(24)
        r = page("login.html", csrf=token, error=error, status=400 if error else 200)
        r.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="strict")
        return r

    @app.get("/login")
    def login_form():
        return login_page()

    @app.post("/login")
    def login(request: Request, data: dict = Depends(form)):
        cookie = request.cookies.get(LOGIN_COOKIE, "")
        if not cookie or not same(data.get("csrf", ""), cookie):
            raise Forbidden("CSRF token missing or wrong; reload the sign-in page")
        name = data.get("name", "").strip()
        if not NAME.fullmatch(name):
            return login_page(error="A name is 1 to 64 letters, digits, spaces or . @ - _")
        token, _ = store.sign_in(name)
        r = to("/next")
        r.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="strict")
        r.delete_cookie(LOGIN_COOKIE)
        return r

    @app.post("/logout")
    def logout(request: Request, data: dict = Depends(form)):
        checked(request, data)
        store.sign_out(request.cookies.get(SESSION_COOKIE, ""))
        r = to("/login")
        r.delete_cookie(SESSION_COOKIE)
        return r

    @app.get("/next")
    def next_item(request: Request):
        s = who(request)
        if s is None:
            return to("/login")
        store.assign(s[0], batch)
        items = store.assigned(s[0])
        for k, (_, answered) in enumerate(items, 1):
            if not answered:
                return to(f"/item/{k}")
        return page("done.html", name=s[0], csrf=s[1], assigned=len(items))

    def render_item(name: str, csrf: str, k: int, error: str = "", posted: dict | None = None):
        items = store.assigned(name)
        if not 1 <= k <= len(items):
            return page("done.html", status=404, name=name, csrf=csrf, assigned=len(items),
                        error=f"There is no item {k}; you have {len(items)} assigned.")
        pid = items[k - 1][0]
        pair = store.pair(pid)
        model_a = store.side_a(name, pid, view=True)  # chosen and stored on first show
        model_b = pair.model_2 if model_a == pair.model_1 else pair.model_1
        old = store.answer(name, pid) or {}
        current = posted if posted is not None else {
            "a": old.get("a_acceptable", ""), "b": old.get("b_acceptable", ""),
            "preference": old.get("preference", ""), "flag": old.get("flag", ""), "comment": old.get("comment", "")}
        return page("item.html", status=400 if error else 200, name=name, csrf=csrf, k=k, total=len(items),
                    done=sum(a for _, a in items), pair_id=pid, prompt=pair.prompt,
                    completion_a=pair.completion(model_a), completion_b=pair.completion(model_b),
                    answered=bool(old), current=current, error=error, header=HEADER,
                    question_a=ACCEPTABLE_Q.format(side="A"), question_b=ACCEPTABLE_Q.format(side="B"),
                    question_pref=PREFERENCE_Q, preferences=PREFERENCE_LABELS, flags=FLAG_LABELS, keys=KEYS,
                    prev=k - 1 if k > 1 else None, next=k + 1 if k < len(items) else None)

    @app.get("/item/{k}")
    def item(request: Request, k: int):
        s = who(request)
        if s is None:
            return to("/login")
        return render_item(s[0], s[1], k)

    @app.post("/item/{k}")
    def submit(request: Request, k: int, data: dict = Depends(form)):
        name = checked(request, data)
        items = store.assigned(name)
        if not 1 <= k <= len(items) or data.get("pair_id") != items[k - 1][0]:
            raise Forbidden(f"item {k} is not the pair this form was shown for; reload the page")
        posted = {f: data.get(f, "") for f in ("a", "b", "preference", "flag", "comment")}
        missing = [q for q, f in (("A acceptable?", "a"), ("B acceptable?", "b"), ("preference", "preference"))
                   if not posted[f]]
        if missing:
            return render_item(name, data["csrf"], k, "Please answer all the questions: missing "
                               + ", ".join(missing) + ".", posted)
        try:
            store.submit(name, items[k - 1][0], posted["a"], posted["b"], posted["preference"], posted["flag"],
                         posted["comment"])
        except ValueError as e:
            return render_item(name, data["csrf"], k, str(e), posted)
        return to(f"/item/{k + 1}" if k < len(items) else "/next")

    @app.get("/progress")
    def progress(request: Request):
        s = who(request)
        if s is None:
            return to("/login")
        return page("progress.html", name=s[0], csrf=s[1], rows=store.progress(), coverage=store.coverage(),
                    overlap=store.meta("overlap") or "")

    return app


def serve(store: Store, host: str, port: int, batch: int) -> None:
    import uvicorn

    uvicorn.run(create_app(store, batch), host=host, port=port, log_level="warning")
