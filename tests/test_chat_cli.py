"""generate --chat (infer/chat_cli.py) driven through a pseudo-terminal: two turns whose answers are the engine's own
answers to the growing conversation (streamed text, stops cut), /reset forgets it, Ctrl-D quits cleanly; /quit,
unknown commands and the 'none' format's refusal without loading a model's programs."""
import argparse
import io
import os
import select
import subprocess
import sys
import time

import pytest

from camel_jax.infer import chat_cli
from camel_jax.infer.chat import encode_prompt
from camel_jax.infer.engine import Request



class Terminal:
    """A child process on a pseudo-terminal (its line discipline echoes what is typed and turns Ctrl-D into EOF)."""

    def __init__(self, argv, env):
        self.master, slave = os.openpty()
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=subprocess.DEVNULL, env=env,
                                     start_new_session=True)
        os.close(slave)
        self.buf = ""

    def expect(self, text, timeout=180):
        """Everything printed before the next `text` (newlines as the terminal shows them, \r\n -> \n)."""
        end = time.time() + timeout
        while text not in self.buf:
            ready, _, _ = select.select([self.master], [], [], max(0.0, end - time.time()))
            if not ready:
                raise TimeoutError(f"no {text!r} after {timeout}s; got {self.buf!r}")
            try:
                chunk = os.read(self.master, 4096)
            except OSError:  # the child closed the terminal
                chunk = b""
            if not chunk:
                raise EOFError(f"the child ended before {text!r}; got {self.buf!r}")
            self.buf += chunk.decode("utf-8", "replace").replace("\r\n", "\n")
        before, self.buf = self.buf.split(text, 1)
        return before

    def send(self, data):
        os.write(self.master, data.encode())

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        os.close(self.master)


@pytest.fixture(scope="module")
def stories(tmp_path_factory):
    from stories_util import stories

    return stories(tmp_path_factory)


def _answer(engine, messages):
    r = Request(encode_prompt(messages, "tulu", engine.tokenizer), 12, stop=["<|user|>"])
    return engine.run([r])[-1][0].text


def _turn(term, line):
    term.send(line + "\n")
    said = term.expect(">>> ")
    assert said.startswith(line + "\n")  # the terminal's echo of the line typed
    return said[len(line) + 1:-1]


def test_two_turns_reset_and_eof_in_a_terminal(stories):
    ckpt, engine, _ = stories
    first = [{"role": "user", "content": "Hello!"}]
    a1 = _answer(engine, first)
    a2 = _answer(engine, first + [{"role": "assistant", "content": a1}, {"role": "user", "content": "Tell me more."}])
    assert a1 and a2 and a1 != a2
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": os.pathsep.join(sys.path)}
    term = Terminal([sys.executable, "-m", "camel_jax.generate", "--checkpoint", ckpt, "--chat",
                     "--max_new_tokens", "12"], env)
    try:
        banner = term.expect(">>> ")
        assert "/reset" in banner and "/quit" in banner
        assert _turn(term, "Hello!") == a1
        assert _turn(term, "Tell me more.") == a2
        assert _turn(term, "/reset") == "(conversation reset)"
        assert _turn(term, "Hello!") == a1  # the same first turn again: nothing of the old conversation is left
        term.send("\x04")  # Ctrl-D at the start of a line: end of input
        assert term.proc.wait(timeout=60) == 0
    finally:
        term.close()


def _args(ckpt, fmt="tulu"):
    return argparse.Namespace(checkpoint=ckpt, chat_format=fmt, stop=[], dtype="float32", max_new_tokens=8,
                              temperature=0.0, top_p=1.0, top_k=0, seed=0, ignore_eos=False)


def test_commands_and_refusals(stories):
    from camel_jax.cli import UsageError
    from camel_jax.generate import main

    out = io.StringIO()
    assert chat_cli.run(_args(stories[0]), stdin=io.StringIO("/reset\n/frob\n\n/quit\nHello\n"), stdout=out) == 0
    text = out.getvalue()
    assert "(conversation reset)" in text and "unknown command /frob" in text and text.count(">>> ") == 4
    with pytest.raises(UsageError, match="'none' takes a single message"):
        chat_cli.run(_args(stories[0], "none"), stdin=io.StringIO(""), stdout=out)
    with pytest.raises(SystemExit):
        main(["--checkpoint", stories[0], "--chat", "--prompt", "x"])
