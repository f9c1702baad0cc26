"""`python -m camel_jax.generate --checkpoint C --chat`: a multi-turn chat in the terminal, the answer streamed as it
is generated.

The whole conversation is kept and put through the chat format every turn (infer/chat.py: tulu, hf; `none` takes
one message, so it cannot chat), so the model sees exactly what it would in a batch file of the same messages.
Tokens come through the driver's streaming hook (infer/driver.py), so what is printed is exactly the answer's text
(stop strings cut). Under tulu the model writing the next "<|user|>" turn itself is a stop. `/reset` forgets the
conversation, `/quit` or end of input (Ctrl-D) quits; Ctrl-C stops an answer (it is kept as far as it got).
Sampling flags are generate's; turn t samples with seed + t.
"""
from __future__ import annotations

import sys

from camel_jax.cli import UsageError

MAX_LEN = 2048  # cache slots per conversation (capped by the model's max_seq_len)
HELP = "(/reset forgets the conversation, /quit or Ctrl-D quits)"


def run(args, stdin=None, stdout=None) -> int:
    from camel_jax import params_io
    from camel_jax.infer.chat import encode_prompt
    from camel_jax.infer.driver import Driver
    from camel_jax.infer.engine import Engine, Request
    from camel_jax.model.tokenizer import load_tokenizer

    stdin, stdout = stdin or sys.stdin, stdout or sys.stdout
    if args.chat_format == "none":
        raise UsageError("--chat needs a chat format (--chat_format tulu or hf): 'none' takes a single message")
    tok_dir = params_io.require_tokenizer_dir(args.checkpoint)
    tokenizer = load_tokenizer(tok_dir)
    encode_prompt("hi", args.chat_format, tokenizer)  # a missing chat template fails before the model loads
    params, cfg = params_io.load_params(args.checkpoint)
    cfg = cfg.replace(dtype=args.dtype)
    engine = Engine(params, cfg, slots=1, max_len=min(cfg.max_seq_len, MAX_LEN), tokenizer=tokenizer)
    stops = list(args.stop) + (["<|user|>"] if args.chat_format == "tulu" else [])
    messages: list[dict] = []
    print(f"chatting with {params_io.checkpoint_root(args.checkpoint)} {HELP}", file=stdout, flush=True)
    with Driver(engine) as driver:
        turn = 0
        while True:
            print(">>> ", end="", file=stdout, flush=True)
            try:
                line = stdin.readline()
            except KeyboardInterrupt:
                line = ""
            if not line:  # end of input
                print(file=stdout, flush=True)
                return 0
            line = line.strip()
            if line == "/quit":
                return 0
            if line == "/reset":
                messages.clear()
                print("(conversation reset)", file=stdout, flush=True)
                continue
            if not line:
                continue
            if line.startswith("/"):
                print(f"(unknown command {line.split()[0]}; {HELP[1:]}", file=stdout, flush=True)
                continue
            messages.append({"role": "user", "content": line})
            prompt = encode_prompt(messages, args.chat_format, tokenizer)
            room = min(args.max_new_tokens, engine.max_len - len(prompt))
            if room < 1:
                messages.pop()
                print(f"(the conversation is {len(prompt)} tokens, the model's limit {engine.max_len}: /reset)",
                      file=stdout, flush=True)
                continue
            handle = driver.submit(Request(prompt, room, args.temperature, args.top_k, args.top_p,
                                           seed=args.seed + turn, stop=stops, ignore_eos=args.ignore_eos),
                                   stream=True)
            turn += 1
            try:
                for ev in handle.events():
                    print(ev.text, end="", file=stdout, flush=True)
            except KeyboardInterrupt:
                handle.cancel()
                handle.result()
            print(file=stdout, flush=True)
            messages.append({"role": "assistant", "content": handle.completions[0].text})
