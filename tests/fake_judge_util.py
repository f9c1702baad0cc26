"""A small OpenAI-compatible chat endpoint on 127.0.0.1 for the judge tests: it answers in the judge template's
format, preferring the output that contains "WIN" (else the longer one, else (a)), replies with prose when the
instruction contains "GARBLE", and fails the first `fail_first` requests with HTTP `fail_status`."""
from __future__ import annotations

import http.server
import json
import re
import threading

_B5 = re.compile(r"### Instruction (\d+):\n(.*?)\n\n### Output \(a\) for example \1:\n(.*?)\n\n"
                 r"### Output \(b\) for example \1:\n(.*?)\n\n##", re.S)
_RANK = re.compile(r'"instruction": """(.*?)""".*?"answer": """(.*?)""".*?"answer": """(.*?)"""', re.S)


def _first_better(a: str, b: str) -> bool:
    if ("WIN" in a) != ("WIN" in b):
        return "WIN" in a
    return len(a) >= len(b)


class FakeJudge:
    def __init__(self, fail_first: int = 0, fail_status: int = 500):
        self.fail_first, self.fail_status = fail_first, fail_status
        self.requests: list[dict] = []  # every POST: path, headers, body
        self.shown: list[tuple[str, str, str]] = []  # (instruction, output (a), output (b)) per judged example
        self._lock = threading.Lock()
        judge = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with judge._lock:
                    judge.requests.append({"path": self.path, "auth": self.headers.get("Authorization"),
                                           "body": body})
                    fail = judge.fail_first > 0
                    judge.fail_first -= fail
                if fail:
                    self.send_response(judge.fail_status)
                    self.end_headers()
                    self.wfile.write(b'{"error": "try again"}')
                    return
                reply = judge.answer(body["messages"][-1]["content"])
                data = json.dumps({"object": "chat.completion", "model": body["model"], "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}]})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data.encode())

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def answer(self, user: str) -> str:
        if "GARBLE" in user:
            return "Both outputs have merits; I cannot choose."
        examples = [m for m in _B5.finditer(user) if int(m.group(1)) >= 5]
        if examples:  # alpaca_farm_greedy_gpt4: one "Output (x)" per example, in order
            lines = []
            for m in examples:
                with self._lock:
                    self.shown.append((m.group(2), m.group(3), m.group(4)))
                lines.append("Output (a)" if _first_better(m.group(3), m.group(4)) else "Output (b)")
            return "\n\n".join(lines)
        m = _RANK.search(user)  # alpaca_eval_gpt4: a Python ranking
        with self._lock:
            self.shown.append((m.group(1), m.group(2), m.group(3)))
        first = 1 if _first_better(m.group(2), m.group(3)) else 2
        return f"[{{'model': 'model_1', 'rank': {first}}}, {{'model': 'model_2', 'rank': {3 - first}}}]"

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
