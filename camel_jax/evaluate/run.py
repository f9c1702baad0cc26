"""The evaluation driver: `python -m camel_jax.evaluate --checkpoint CKPT --tasks ... --out DIR` and `rescore`.

Per task (a benchmark setting, registry.py): build the items (the module's protocol), take the --max_examples
subset, skip what DIR already holds, run the rest — choice settings through `infer.scoring.Scorer`'s
next-token log-probs (one forward per prompt, the candidates read off its last position), generate settings through
the continuous-batching `infer.engine.Engine` — and append each prediction as it is made (records.py). Metrics are
always computed from the records read back from disk, by the same function `rescore` calls, so a rescore
reproduces a run exactly and a resumed run equals an uninterrupted one. Scoring Codex runs the samples in the
sandbox and AlpacaFarm asks the judge (score_options.py); a setting whose correctness only its score knows has it
written back into the predictions (records.annotate).

Protocols (task.PROTOCOLS): `paper` feeds prompts without BOS (except AlpacaFarm's, `Setting.paper_bos`, whose
script tokenized with it), reads a literal "<s>" in a prompt as the BOS id with a SentencePiece tokenizer (TydiQA's
truncated passages, task.encode_prompt) and gives the engine no stop strings (decoding runs to EOS or
max_new_tokens and the text is cut at the first stop afterwards, as the June-2023 code did: the same text, more
tokens); `fixed` prepends BOS and stops decoding at the stop strings. Prompt text is the module's, tokenized as
one string (what open-instruct's `tokenizer(prompt)` did), so prompts are byte-exact in both.

--max_examples N: N items per task, the same ones every run and nested (the first N of a fixed order, so a rerun
with a larger N continues): items in the module's order, or with a `subset_key` (MMLU's subject) round-robin over
the keys — N = 57 gives one question per subject.

Why the driver does not run through `seqio.Evaluator` (evaluate/seqio_tasks.py registers every task for SeqIO and
gives the Evaluator the engine and scorer as predict_fn/score_fn, tested to report these same metrics): the
Evaluator calls predict_fn/score_fn once with the whole dataset and computes metrics only after every prediction
exists, so it can neither write predictions as they come nor resume a killed run from them; its predict_fn returns
one sequence per example (Codex needs n = 20 samples with their own seeds); and the protocol's per-record facts (raw
generation before the post-hoc stop, extracted answer, correctness, tokens) have no place in its outputs.

--data_dir default: $CAMEL_JAX_EVAL_DATA, else $CAMEL_JAX_SHARED/data, else ../shared/data beside the repository;
otherwise an error pointing to scripts/download_eval_data.sh, which writes that layout.
"""
from __future__ import annotations

import contextlib
import os
import sys
import time
from typing import Sequence

from camel_jax.cli import UsageError
from camel_jax.evaluate import records as R
from camel_jax.evaluate import registry, score_options, table
from camel_jax.evaluate.task import BuildContext, Item, Setting, add_bos, encode_prompt, tulu_wrap

DATA_ENV = "CAMEL_JAX_EVAL_DATA"
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def default_data_dir() -> str:
    for candidate in (os.environ.get(DATA_ENV), os.environ.get("CAMEL_JAX_SHARED") and
                      os.path.join(os.environ["CAMEL_JAX_SHARED"], "data"),
                      os.path.join(os.path.dirname(REPO), "shared", "data")):
        if candidate and os.path.isdir(candidate):
            return candidate
    raise UsageError(f"no --data_dir given, ${DATA_ENV} unset and no ../shared/data beside the repository; run "
                     f"scripts/download_eval_data.sh DIR and pass --data_dir DIR")


def subset(items: Sequence[Item], n: int | None, key=None) -> list[Item]:
    """The first n items of a fixed order: the module's, or round-robin over `key` groups (in first-seen order)."""
    if key is not None:
        groups: dict[str, list[Item]] = {}
        for it in items:
            groups.setdefault(key(it), []).append(it)
        order, depth = [], 0
        while len(order) < len(items):
            order += [g[depth] for g in groups.values() if depth < len(g)]
            depth += 1
        items = order
    return list(items if n is None else items[:n])


def make_render(fmt: str, tokenizer, chat: bool):
    """render(user, prefix, plain) for a chat format; `plain` when the setting or the run has no chat format."""
    if not chat or fmt == "none":
        return lambda user, prefix, plain: plain
    if fmt == "tulu":
        return lambda user, prefix, plain: tulu_wrap(user, prefix)
    from camel_jax.infer.chat import hf_tokenizer

    hf = hf_tokenizer(tokenizer)
    if not getattr(hf, "chat_template", None):
        raise UsageError(f"--chat_format hf: the tokenizer at {tokenizer.path} has no chat_template")
    # A template's BOS text: a Hugging Face tokenizer reads it back as the BOS id (then encode_prompt adds none);
    # SentencePiece would spell it out as text, so it is dropped and BOS left to the protocol.
    bos = getattr(hf, "bos_token", None) if getattr(tokenizer, "_sp", None) is not None else None

    def render(user, prefix, plain):
        text = hf.apply_chat_template([{"role": "user", "content": user.strip()}], tokenize=False,
                                      add_generation_prompt=True)
        if bos and text.startswith(bos):
            text = text[len(bos):]
        return text + prefix

    return render


def truncate(text: str, stops: Sequence[str]) -> str:
    cut = min((i for i in (text.find(s) for s in stops) if i >= 0), default=-1)
    return text if cut < 0 else text[:cut]


def _bar(name: str, total: int, initial: int, quiet: bool):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=name, unit="item", file=sys.stderr, mininterval=1.0,
                disable=quiet)


class _Task:
    """One setting's state in this run: its items, the selection, what DIR already had, and this session."""

    def __init__(self, setting: Setting, ctx: BuildContext, args, out_dir: str, bos: bool):
        self.setting, self.ctx = setting, ctx
        self.add_bos, self.bos_text = bos and add_bos(setting, args.protocol), args.protocol == "paper"
        self.items = list(setting.items(ctx))
        self.by_id = {it.id: it for it in self.items}
        if len(self.by_id) != len(self.items):
            raise ValueError(f"{setting.name}: item ids are not unique")
        self.selected = subset(self.items, args.max_examples, setting.subset_key)
        self.dir = os.path.join(out_dir, setting.name)
        self.path = os.path.join(self.dir, R.PREDICTIONS)
        self.done = R.read_predictions(self.path, self.by_id)
        self.todo = [it for it in self.selected if it.id not in self.done]
        self.session = {"new_items": 0, "prompt_tokens": 0, "output_tokens": 0, "wall_time_s": 0.0}


def _ids(task: _Task, tokenizer) -> list[list[int]]:
    return [encode_prompt(tokenizer, it.prompt, task.add_bos, task.bos_text) for it in task.todo]


def _base_record(item: Item, ids: list[int]) -> dict:
    return {"id": item.id, "prompt": item.prompt, "gold": item.gold, "meta": dict(item.meta),
            "prompt_tokens": len(ids)}


def run_choice(task: _Task, scorer, tokenizer, quiet: bool) -> None:
    """Next-token log-probs of the choices (`encode(choice)[0]`, open-instruct's ids) after each prompt."""
    import numpy as np

    s = task.setting
    choice_ids = [tokenizer.encode(c)[0] for c in s.choices]
    prompts = _ids(task, tokenizer)
    step = 4 * scorer.batch_size
    bar = _bar(s.name, len(task.selected), len(task.selected) - len(task.todo), quiet)
    with R.Appender(task.path) as out:
        for lo in range(0, len(prompts), step):
            t0 = time.time()
            logp = scorer.next_token_logprobs(prompts[lo:lo + step])
            for item, ids, row in zip(task.todo[lo:lo + step], prompts[lo:lo + step], logp):
                lps = [float(row[i]) for i in choice_ids]
                answer = s.choices[int(np.argmax(lps))]
                rec = _base_record(item, ids)
                rec.update({"truncated": len(ids) > scorer.max_len, "choice_ids": choice_ids,
                            "logprobs": dict(zip(s.choices, lps)), "answer": answer,
                            "correct": s.correct(answer, item) if s.correct else None})
                out.write(rec)
                task.session["prompt_tokens"] += len(ids)
                task.session["new_items"] += 1
                bar.update(1)
            task.session["wall_time_s"] += time.time() - t0
    bar.close()


def _requests(task: _Task, prompts, max_len: int, protocol: str, cap: int | None):
    from camel_jax.infer.engine import Request

    d = task.setting.decoding
    max_new = min(d.max_new_tokens, cap or d.max_new_tokens)
    out, flags = [], []
    for ids in prompts:
        if len(ids) + 1 > max_len:  # keep the prompt's end: the question and the answer prefix
            ids = ids[-(max_len - 1):]
        budget = min(max_new, max_len - len(ids))
        flags.append({"truncated": len(ids) < len(prompts[len(out)]), "max_new_tokens": budget})
        out.append(Request(ids, budget, d.temperature, 0, d.top_p, n=d.n, seed=d.seed,
                           stop=tuple(d.stop) if protocol == "fixed" else ()))
    return out, flags


def prepare_generate(task: _Task, tokenizer, args, max_len: int) -> None:
    task.prompts = _ids(task, tokenizer)
    task.requests, task.flags = _requests(task, task.prompts, max_len, args.protocol, args.max_new_tokens)


def run_generate(tasks: Sequence[_Task], engine, quiet: bool) -> None:
    """Every generate setting's requests (prepare_generate) through the engine at once, records written as requests
    finish. One queue across settings keeps the slots full where one setting alone would leave them idle while its
    last answers finish (a few items per setting, Codex's 20 samples beside GSM's one); queued longest prompt first,
    so rows decoding together have similar lengths and attend similar windows. The outputs do not depend on the
    mix (the engine is batch-invariant). Each step's wall time is shared among the settings by the tokens it gave
    each, so the settings' times add up to the whole."""
    owner, times, count = {}, {}, {}
    order = sorted(((len(r.prompt), -k, -i, t, i) for k, t in enumerate(tasks) for i, r in enumerate(t.requests)),
                   key=lambda x: x[:3], reverse=True)
    for _, _, _, t, i in order:
        owner[engine.submit(t.requests[i])] = (t, i)
    bars = {id(t): _bar(t.setting.name, len(t.selected), len(t.selected) - len(t.todo), quiet) for t in tasks}

    def counted(rid, sample, tokens, completion):
        key = id(owner[rid][0])
        count[key] = count.get(key, 0) + 1

    engine.on_token = counted
    with contextlib.ExitStack() as stack:
        outs = {id(t): stack.enter_context(R.Appender(t.path)) for t in tasks}
        more = True
        while more:
            count.clear()
            t0 = time.time()
            more = engine.step()
            dt, total = time.time() - t0, sum(count.values())
            for key, n in count.items():
                times[key] = times.get(key, 0.0) + dt * n / total
            for rid, comps in engine.pop_finished():
                task, i = owner[rid]
                outs[id(task)].write(_generated(task, i, comps))
                bars[id(task)].update(1)
    engine.on_token = None
    for t in tasks:
        t.session["wall_time_s"] += times.get(id(t), 0.0)
        bars[id(t)].close()


def _generated(task: _Task, i: int, comps) -> dict:
    """The prediction record of task.todo[i] from its completions; counts it in the task's session."""
    s, d = task.setting, task.setting.decoding
    item = task.todo[i]
    raw = [c.text for c in comps]
    texts = [truncate(t, d.stop) for t in raw]
    answers = [s.extract(t, item) for t in texts]
    correct = [s.correct(a, item) for a in answers] if s.correct else None
    one = d.n == 1
    rec = _base_record(item, task.prompts[i])
    rec.update(task.flags[i])
    rec.update({"output" if one else "outputs": texts[0] if one else texts,
                "generation" if one else "generations": raw[0] if one else raw,
                "finish_reason": comps[0].finish_reason if one else [c.finish_reason for c in comps],
                "output_tokens": sum(len(c.tokens) for c in comps),
                "answer": answers[0] if one else answers,
                "correct": (correct[0] if one else correct) if correct is not None else None})
    task.session["prompt_tokens"] += len(task.prompts[i])
    task.session["output_tokens"] += rec["output_tokens"]
    task.session["new_items"] += 1
    return rec


def score_task(out_dir: str, setting: Setting, ids: Sequence[str], options: dict | None = None) -> dict:
    """The setting's metrics over the saved records of `ids` (in that order), written to <task>/metrics.json; a
    setting without `correct` gets its score's per_item written into the records."""
    path = os.path.join(out_dir, setting.name, R.PREDICTIONS)
    saved = R.load_records(path) if os.path.exists(path) else {}
    recs = [saved[i] for i in ids if i in saved]
    metrics = setting.score(recs, **(options or {}))
    metrics = {**metrics, "complete": len(recs) == len(ids), "records": len(recs), "selected": len(ids)}
    if setting.correct is None and recs:
        R.annotate(path, metrics.get("per_item") or {}, [r["id"] for r in recs])
    R.write_json(os.path.join(out_dir, setting.name, R.METRICS), metrics)
    return metrics


def _task_record(task: _Task, identity: dict, args, started: float) -> dict:
    path = os.path.join(task.dir, R.RUN_FILE)
    old = R.read_json(path) if os.path.exists(path) else {}
    s = task.setting
    session = {**task.session, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
               "slots": args.slots, "resumed_with": len(task.done)}
    return {"task": s.name, "group": s.group, "column": s.column, "kind": s.kind, **identity,
            "git_commit": R.git_commit(), "data_dir": task.ctx.data_dir, "chat": task.ctx.chat,
            "seeds": {"decoding": s.decoding.seed if s.decoding else None, "subsample": s.sample_seed},
            "decoding": s.decoding.__dict__ if s.decoding else None, "choices": list(s.choices),
            "max_examples": args.max_examples, "counts": {"items": len(task.items), "selected": len(task.selected)},
            "ids": [it.id for it in task.selected], "sessions": old.get("sessions", []) + [session]}


def _identity(args) -> dict:
    return {"protocol": args.protocol, "checkpoint": os.path.abspath(args.checkpoint),
            "chat_format": args.chat_format, "max_new_tokens": args.max_new_tokens, "dtype": args.dtype}


def evaluate(args) -> int:
    from camel_jax import params_io
    from camel_jax.model.tokenizer import load_tokenizer

    settings = registry.resolve(args.tasks)
    for flag in ("max_examples", "slots", "max_new_tokens"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            raise UsageError(f"--{flag} must be >= 1, got {getattr(args, flag)}")
    score_options.check(args)
    data_dir = os.path.abspath(args.data_dir) if args.data_dir else default_data_dir()
    if not os.path.isdir(data_dir):
        raise UsageError(f"--data_dir {data_dir}: no such folder (scripts/download_eval_data.sh DIR writes one)")
    cfg = params_io.load_model_config(args.checkpoint).replace(dtype=args.dtype)
    tok_dir = params_io.tokenizer_dir(args.checkpoint)
    if tok_dir is None:
        raise UsageError(f"--checkpoint {args.checkpoint}: carries no tokenizer/ folder")
    mesh = None
    if args.mesh:
        from camel_jax.model.mesh import build_mesh

        mesh = build_mesh(args.mesh, cfg)
    identity = _identity(args)
    R.check_identity(args.out, identity)
    from camel_jax.infer import compile_cache

    try:
        compile_cache.enable(getattr(args, "compile_cache", None))
    except ValueError as e:
        raise UsageError(str(e)) from None
    tokenizer = load_tokenizer(tok_dir)
    bos = tokenizer.bos_id is not None and tokenizer.bos_id >= 0
    tasks = []
    for s in settings:
        chat = s.chat and args.chat_format != "none"
        ctx = BuildContext(data_dir, args.protocol, tokenizer, make_render(args.chat_format, tokenizer, chat), chat,
                           cfg.max_seq_len)
        tasks.append(_Task(s, ctx, args, args.out, bos))
    started = time.time()
    if any(t.todo for t in tasks):
        params, _ = params_io.load_params(args.checkpoint)
        choice = [t for t in tasks if t.todo and t.setting.kind == "choice"]
        if choice:
            from camel_jax.infer.scoring import Scorer

            scorer = Scorer(params, cfg, batch_size=args.slots, mesh=mesh)
            for t in choice:
                run_choice(t, scorer, tokenizer, args.no_progress)
            del scorer
        gen = [t for t in tasks if t.todo and t.setting.kind == "generate"]
        if gen:
            from camel_jax.infer.engine import Engine

            for t in gen:
                prepare_generate(t, tokenizer, args, cfg.max_seq_len)
            longest = max(len(r.prompt) + r.max_new_tokens for t in gen for r in t.requests)
            engine = Engine(params, cfg, slots=args.slots, max_len=min(cfg.max_seq_len, -(-longest // 128) * 128),
                            mesh=mesh, tokenizer=tokenizer)
            run_generate(gen, engine, args.no_progress)
    for t in tasks:
        rec = _task_record(t, identity, args, started)
        R.write_json(os.path.join(t.dir, R.RUN_FILE), rec)
        metrics = score_task(args.out, t.setting, rec["ids"], score_options.for_setting(t.setting, args, args.out,
                                                                                        data_dir))
        print(f"{t.setting.name}: {_shown(t.setting, metrics)} over {metrics['records']} "
              f"items ({len(t.done)} resumed, {t.session['new_items']} new, {t.session['wall_time_s']:.1f}s)",
              file=sys.stderr)
    name = _name(args.checkpoint)
    print(table.markdown(table.write(args.out, registry.SETTINGS.values(), name), name), end="")
    return 0


def _shown(setting: Setting, metrics: dict) -> str:
    value = metrics.get(setting.metric)
    return f"{setting.metric} {value}" if value is not None else f"{setting.metric} {metrics.get('status', None)}"


def _name(checkpoint: str) -> str:
    return os.path.basename(os.path.abspath(checkpoint).rstrip("/"))


def rescore(args) -> int:
    """Every metric of --out recomputed from its saved predictions (no model); then the table."""
    identity = R.read_json(os.path.join(args.out, R.RUN_FILE)) if os.path.isfile(
        os.path.join(args.out, R.RUN_FILE)) else None
    score_options.check(args)
    names = R.task_dirs(args.out)
    if not names:
        raise UsageError(f"--out {args.out}: no task predictions to rescore")
    for name in names:
        setting = registry.SETTINGS.get(name)
        if setting is None:
            raise UsageError(f"--out {args.out}: folder {name!r} is not a registered task "
                             f"({', '.join(registry.SETTINGS)})")
        run_path = os.path.join(args.out, name, R.RUN_FILE)
        if not os.path.isfile(run_path):
            raise UsageError(f"{run_path}: missing; cannot tell which items were selected")
        task_rec = R.read_json(run_path)
        metrics = score_task(args.out, setting, task_rec["ids"],
                             score_options.for_setting(setting, args, args.out, task_rec["data_dir"]))
        print(f"{name}: {_shown(setting, metrics)} over {metrics['records']} items",
              file=sys.stderr)
    name = _name(identity["checkpoint"]) if identity else ""
    print(table.markdown(table.write(args.out, registry.SETTINGS.values(), name), name), end="")
    return 0
