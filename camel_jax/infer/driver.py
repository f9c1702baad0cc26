"""One engine shared by many concurrent callers: a driver thread owns the Engine and steps it while work is pending.

The Engine is single-threaded by design (host mirrors of device state, donated buffers). Servers and chat loops
have many callers at once, on threads or on an asyncio loop, so every engine call happens on one thread here:
`submit` checks a request in the caller (a bad one raises ValueError at once) and queues it; the thread submits
it between steps, so a new request joins the running batch at the next step, and sleeps when nothing is pending.

Each request gets a `Handle`: its events (`Event`: new token ids and, when streamed, a text delta) arrive through
a queue — a `queue.Queue` for threads, or an asyncio queue fed with `call_soon_threadsafe` when the handle was made
for a loop — followed by the end of the stream; `cancel()` ends it between two steps, freeing its slots and
queued samples (a client gone mid-stream costs no further compute).

Text deltas (`TextDeltas`) concatenate to exactly the completion's final text: a delta never holds text a stop
would cut later. Held back are an unfinished UTF-8 character (decoded as U+FFFD), the longest text suffix that
begins some stop string, and trailing tokens that begin some stop token sequence; the end flushes the rest.
"""
from __future__ import annotations

import asyncio
import collections
import dataclasses
import queue
import threading
from typing import Any, AsyncIterator, Callable, Iterator, Sequence

from camel_jax.infer.engine import Completion, Engine, Request

_END = object()


@dataclasses.dataclass
class Event:
    sample: int  # which of the request's n samples
    text: str  # new text since this sample's last event ("" unless the handle streams text)
    tokens: list[int]  # new token ids since this sample's last event
    completion: Completion | None  # set on the sample's last event


def window_start(decode: Callable[[Sequence[int]], str], ids: Sequence[int], i: int, width: int) -> int:
    """Where a window of about `width` tokens before ids[i] should begin: not inside a character (a token whose
    own text starts with U+FFFD continues the one before), since a decoder may render a torn character's bytes
    differently alone than followed by more (SentencePiece's byte fallback does), which would shift the text."""
    s = max(0, i - width)
    while s > max(0, i - 3 * width) and decode([ids[s]]).startswith("\ufffd"):
        s -= 1
    return s


class TextDeltas:
    """The text of one sample as deltas safe to show: their concatenation is the final (stop-cut) text.

    Linear in the answer's length: the text of the tokens so far is kept as a committed part (never decoded again)
    and the tokens after it, decoded after CONTEXT tokens of what precedes them (so a SentencePiece leading space
    or a byte-level BPE merge comes out as in the whole text) and read as the difference to that context's own
    text. Tokens are committed once their text ends on a whole character; a run of more than MAX_PENDING tokens
    that never does (invalid bytes) is committed but for its last 4 tokens (UTF-8 decoding of a byte depends on
    at most 3 bytes after it). `decoded` counts the tokens passed to `decode` (bounded per update)."""

    CONTEXT = 4
    MAX_PENDING = 16

    def __init__(self, decode: Callable[[Sequence[int]], str], stops: Sequence[str] = (),
                 stop_ids: Sequence[Sequence[int]] = ()):
        self.decode, self.stops, self.stop_ids = decode, [s for s in stops if s], [list(s) for s in stop_ids]
        self._longest = max((len(s) for s in self.stops), default=0)
        self._anchor, self._start, self._prefix = 0, 0, ""  # tokens[:anchor] are committed; the text of
        # tokens[start:anchor] (the context, about CONTEXT tokens) is `prefix`
        self._committed = 0  # length of the committed text
        self._bad = 0  # how many U+FFFD end it (shown only once a character follows, as in the whole text)
        self._end = ""  # the last `longest` characters before those U+FFFD (where a stop may begin)
        self._unsent = ""  # committed text not sent yet
        self._over = 0  # characters sent past the committed text
        self._parts: list[str] = []  # the deltas sent (joined once, at finish)
        self._n_sent = 0
        self.decoded = 0

    def _held_tokens(self, tokens: Sequence[int]) -> int:
        """The most trailing tokens that are a proper prefix of some stop token sequence."""
        n = len(tokens)
        return max((j for s in self.stop_ids for j in range(1, min(len(s), n + 1))
                    if list(tokens[n - j:]) == s[:j]), default=0)

    def _last(self, text: str) -> str:
        return text[len(text) - self._longest:] if len(text) > self._longest else text

    def _text_after(self, tokens: Sequence[int], a: int, m: int, prefix: str) -> str:
        window = list(tokens[self._start:m])
        self.decoded += len(window)
        return self.decode(window)[len(prefix):] if self._start < a else self.decode(window)

    def _commit(self, tokens: Sequence[int], upto: int, text: str) -> None:
        self._committed += len(text)
        kept = text.rstrip("\ufffd")
        if kept:
            self._end = self._last(self._end + "\ufffd" * min(self._bad, self._longest) + kept)
        self._bad = len(text) - len(kept) + (0 if kept else self._bad)
        if self._over:
            text, self._over = text[self._over:], max(0, self._over - len(text))
        self._unsent += text
        self._anchor = upto
        self._start = window_start(self.decode, tokens, upto, self.CONTEXT)
        self.decoded += upto - self._start
        self._prefix = self.decode(list(tokens[self._start:upto])) if self._start < upto else ""

    def update(self, tokens: Sequence[int]) -> str:
        """The new safe text after `tokens` (all generated so far); "" while nothing new is certain."""
        m = max(len(tokens) - self._held_tokens(tokens), self._anchor)
        a = self._anchor
        if m - a > self.MAX_PENDING:  # never a whole character: commit all but what later bytes may still change
            self._commit(tokens, m - 4, self._text_after(tokens, a, m - 4, self._prefix))
            a = self._anchor
        tail = self._text_after(tokens, a, m, self._prefix) if m > a else ""
        clean = tail.rstrip("\ufffd")
        total = self._committed + len(clean) if clean else self._committed - self._bad
        safe = total
        end = self._last(self._end + "\ufffd" * min(self._bad, self._longest) + clean) if clean else self._end
        off = total - len(end)  # `end` is the last characters of the text (trailing U+FFFD stripped)
        for i in range(max(0, total - self._longest + 1), total):  # the earliest start of a possible stop
            if any(s.startswith(end[i - off:]) for s in self.stops):
                safe = i
                break
        ahead = (self._unsent + clean) if not self._over else clean[self._over:]
        delta = ahead[:max(0, safe - self._n_sent)]
        if delta:
            self._n_sent += len(delta)
            self._parts.append(delta)
            cut = min(len(delta), len(self._unsent))
            self._unsent, self._over = self._unsent[cut:], self._over + len(delta) - cut
        if m > a and len(clean) == len(tail):
            self._commit(tokens, m, tail)
        return delta

    def finish(self, text: str) -> str:
        """The rest of the final text."""
        sent = "".join(self._parts)
        delta = text[len(sent):] if text.startswith(sent) else ""
        self._parts, self._n_sent = [text], len(text)
        return delta


class Handle:
    """One submitted request. Iterate `events()` (threads) or `aevents()` (the loop given at submit); `result()` /
    `aresult()` wait for the completions; `cancel()` may be called from anywhere, any number of times."""

    def __init__(self, driver: "Driver", request: Request, stream: bool, loop: asyncio.AbstractEventLoop | None):
        self.request, self.stream, self._driver, self._loop = request, stream, driver, loop
        self._q: Any = asyncio.Queue() if loop is not None else queue.Queue()
        self.rid: int | None = None  # the engine's id, set on the driver thread
        self.completions: list[Completion] | None = None
        self.cancelled = False
        self._sent = [0] * request.n
        self._deltas: list[TextDeltas] = []

    def _push(self, item: Any) -> None:
        if self._loop is None:
            self._q.put(item)
            return
        try:
            self._loop.call_soon_threadsafe(self._q.put_nowait, item)
        except RuntimeError:  # the caller's loop is closed: nobody listens any more
            pass

    def cancel(self) -> None:
        if not self.cancelled:
            self.cancelled = True
            self._driver._post("cancel", self)

    def _check(self, item: Any) -> bool:
        if isinstance(item, BaseException):
            raise item
        return item is not _END

    def events(self) -> Iterator[Event]:
        while self._check(item := self._q.get()):
            yield item

    async def aevents(self) -> AsyncIterator[Event]:
        while self._check(item := await self._q.get()):
            yield item

    async def abatches(self) -> AsyncIterator[list[Event]]:
        """Like aevents(), but each wait returns every event queued by then: a consumer slower than the engine
        (one that scores what it streams) takes them in one go instead of falling further behind."""
        while True:
            items = [await self._q.get()]
            while not self._q.empty():
                items.append(self._q.get_nowait())
            batch = []
            for item in items:
                if isinstance(item, BaseException) or item is _END:
                    if batch:
                        yield batch
                    self._check(item)
                    return
                batch.append(item)
            yield batch

    def result(self) -> list[Completion]:
        for _ in self.events():
            pass
        return self.completions

    async def aresult(self) -> list[Completion]:
        async for _ in self.aevents():
            pass
        return self.completions


class Driver:
    """Owns `engine` on a thread of its own (`start()` / `close()`, or use it as a context manager)."""

    def __init__(self, engine: Engine):
        self.engine = engine
        engine.on_token = self._on_token
        self._inbox: collections.deque = collections.deque()
        self._cv = threading.Condition()
        self._live: dict[int, Handle] = {}
        self._closing = False
        self.error: BaseException | None = None  # a failed step: the engine is unusable after it
        self.cancelled = 0  # requests cancelled before they ended
        self._thread = threading.Thread(target=self._run, name="camel_jax-engine", daemon=True)

    def start(self) -> "Driver":
        self._thread.start()
        return self

    def close(self) -> None:
        with self._cv:
            self._closing = True
            self._cv.notify()
        if self._thread.is_alive():
            self._thread.join()
        if self.engine.on_token == self._on_token:
            self.engine.on_token = None  # the engine may be driven again, by its owner or another driver

    def __enter__(self) -> "Driver":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def submit(self, request: Request, *, stream: bool = False, loop: asyncio.AbstractEventLoop | None = None
               ) -> Handle:
        """Queue `request` (ValueError at once if the engine refuses it). stream: compute text deltas (costs a
        decode per token). loop: deliver events to that asyncio loop (the caller's), else to a thread queue."""
        self.engine.check(request)
        if self.error is not None:
            raise RuntimeError(f"the engine failed earlier: {self.error!r}")
        if self._closing:
            raise RuntimeError("the driver is closed")
        handle = Handle(self, request, stream, loop)
        self._post("submit", handle)
        return handle

    def _post(self, op: str, handle: Handle) -> None:
        with self._cv:
            self._inbox.append((op, handle))
            self._cv.notify()

    def pending(self) -> tuple[int, int, int]:
        """(requests in flight, busy slots, queued samples): a snapshot, read without stopping the thread."""
        return (len(self._live) + len(self._inbox),) + self.engine.pending()

    # -- the driver thread ----------------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._inbox and not self._live and not self._closing:
                    self._cv.wait()
                if self._closing:
                    break
                todo = list(self._inbox)
                self._inbox.clear()
            try:
                for op, handle in todo:
                    self._submit(handle) if op == "submit" else self._cancel(handle)
                if self._live:
                    self.engine.step()
                    self._deliver()
            except Exception as e:  # a bug or a device failure: every caller hears of it, nothing hangs
                self.error = e
                for h in list(self._live.values()) + [h for _, h in todo if h.rid is None]:
                    h._push(e)
                self._live.clear()
                break
        with self._cv:
            left = [h for _, h in self._inbox] + list(self._live.values())
        for h in left:
            h._push(RuntimeError("the driver was closed"))

    def _submit(self, handle: Handle) -> None:
        if handle.cancelled:  # cancelled before it reached the engine
            handle.completions = [Completion([], "", "cancelled") for _ in range(handle.request.n)]
            handle._push(_END)
            return
        try:
            rid = self.engine.submit(handle.request)
        except ValueError as e:  # checked at submit already; a refusal here ends only this request
            handle._push(e)
            return
        handle.rid = rid
        self._live[rid] = handle
        if handle.stream and self.engine.tokenizer is not None:
            r = handle.request
            handle._deltas = [TextDeltas(lambda ids: self.engine.text(rid, ids), r.stop, self.engine.stop_ids(rid))
                              for _ in range(r.n)]

    def _cancel(self, handle: Handle) -> None:
        if handle.rid not in self._live:
            return  # finished already (or never submitted: _submit ended it)
        self.engine.cancel(handle.rid)
        self.cancelled += 1
        self._end(handle)

    def _end(self, handle: Handle) -> None:
        handle.completions = self.engine.results(handle.rid)
        del self._live[handle.rid]
        self.engine.forget(handle.rid)
        handle._push(_END)

    def _deliver(self) -> None:
        for rid, _ in self.engine.pop_finished():
            if rid in self._live:
                self._end(self._live[rid])

    def _on_token(self, rid: int, sample: int, tokens: list[int], completion: Completion | None) -> None:
        handle = self._live.get(rid)
        if handle is None:
            return
        new = tokens[handle._sent[sample]:]
        handle._sent[sample] = len(tokens)
        text = ""
        if handle._deltas:
            d = handle._deltas[sample]
            text = d.update(tokens) if completion is None else d.finish(completion.text or "")
        if new or text or completion is not None:
            handle._push(Event(sample, text, list(new), completion))
