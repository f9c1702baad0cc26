"""AlpacaFarm (open_instruct.md §4.6): the model's greedy answers to AlpacaEval's 805 instructions, judged pairwise
against text-davinci-003's; the table's column is the win rate (ties count half), with AlpacaEval 2's
length-controlled win rate beside it.

Data: `<data_dir>/alpaca_eval/alpaca_eval.jsonl` ({"instruction", "output", "generator", "dataset"}: AlpacaEval's
eval set, whose `output` is its text-davinci-003 reference). The paper read HF `tatsu-lab/alpaca_farm` (instruction
+ input); AlpacaEval's set is the same 805 prompts with the input already joined to the instruction by "\\n\\n", so
this file has no `input` field and every item takes §4.6's no-input branch: the user turn is the instruction as is.
A file that does carry a non-empty `input` gets §4.6's other branch, instruction.strip() + "\\n\\n" + input.strip().
Protocol `paper` with the TÜLU chat format writes the prompt exactly as the June-2023 script did, without stripping
the instruction (5 of the 805 end in whitespace, which `tulu_wrap` would strip); protocol `fixed` renders through
the run's chat format like every task. This script, unlike the other tasks, tokenised WITH the BOS
token (default AutoTokenizer): `paper_bos=True`, so the driver adds BOS in both protocols.

Reference: the eval set's own text-davinci-003 output (what `alpaca_eval` compares against by default). The paper's
judge compared against text-davinci-003 outputs regenerated with 2048 max tokens (HF
`hamishivi/alpaca-farm-davinci-003-2048-token`), which ../shared/data does not hold; `reference_file=` takes any
AlpacaEval-format outputs file (e.g. that one, or alpaca_eval's results/text_davinci_003/model_outputs.json, a
different and shorter generation) matched by instruction.

Decoding: greedy, 2048 new tokens, no stop strings (the paper). On CPU that is long per item; the driver's
--max_examples takes a subset spread over the five source datasets (`subset_key`).
"""
from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Any, Sequence

from camel_jax import cli
from camel_jax.evaluate import judge as judge_lib
from camel_jax.evaluate.length_control import N_SPLITS, length_controlled_winrate
from camel_jax.evaluate.task import BuildContext, Decoding, Item, Setting, tulu_wrap

DATA_FILE = "alpaca_eval/alpaca_eval.jsonl"


class DataError(ValueError):
    """A malformed eval or reference file, named with its line and field."""


def user_turn(row: dict) -> str:
    """§4.6: the instruction, or instruction.strip() + "\\n\\n" + input.strip() when there is an input."""
    if row.get("input"):
        return row["instruction"].strip() + "\n\n" + row["input"].strip()
    return row["instruction"]


def judge_instruction(row: dict) -> str:
    """What the judge is shown as the instruction: alpaca_eval joins a non-empty input with "\\n\\n" (unstripped)."""
    return row["instruction"] + "\n\n" + row["input"] if row.get("input") else row["instruction"]


def load_rows(data_dir: str | os.PathLike) -> list[dict]:
    path = Path(data_dir) / DATA_FILE
    if not path.is_file():
        raise DataError(f"AlpacaFarm needs {path} (the AlpacaEval eval set; --data_dir)")
    rows = []
    for n, row in cli.json_lines(path, DataError):
        for field in ("instruction", "output"):
            if not isinstance(row.get(field), str):
                raise DataError(f"{path}:{n}: field {field!r} missing or not a string")
        rows.append(row)
    return rows


def _renders_tulu(ctx: BuildContext) -> bool:
    return ctx.chat and ctx.render("x", "", "x") == tulu_wrap("x", "")


def items(ctx: BuildContext) -> list[Item]:
    out = []
    for i, row in enumerate(load_rows(ctx.data_dir)):
        user = user_turn(row)
        if ctx.protocol == "paper" and _renders_tulu(ctx):
            prompt = "<|user|>\n" + user + "\n<|assistant|>\n"  # §4.6's string, instruction unstripped
        else:
            prompt = ctx.render(user, "", user)
        out.append(Item(id=str(i), prompt=prompt,
                        gold={"reference": row["output"], "reference_generator": row.get("generator")},
                        meta={"instruction": judge_instruction(row), "dataset": row.get("dataset", ""), "index": i}))
    return out


def extract(text: str, item: Item) -> str:
    """The answer is the generation itself (decoded without special tokens, unstripped, as the paper saved it)."""
    return text


def head2head(preferences: Sequence[int]) -> dict:
    """The fork's `head2head_to_metrics`: 0 = draw (counted 1.5), 1 = reference wins, 2 = model wins;
    win_rate = mean(pref − 1) × 100 and its standard error (sample SEM) × 100."""
    vals = [1.5 if p == 0 else float(p) for p in preferences]
    n = len(vals)
    mean = sum(v - 1 for v in vals) / n
    var = sum((v - 1 - mean) ** 2 for v in vals) / (n - 1) if n > 1 else None
    return {"n_wins": sum(p == 2 for p in preferences), "n_wins_base": sum(p == 1 for p in preferences),
            "n_draws": sum(p == 0 for p in preferences), "n_total": n, "win_rate": 100 * mean,
            "standard_error": 100 * math.sqrt(var / n) if var is not None else None}


def _reference_map(path: str | os.PathLike) -> dict[str, str]:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"reference_file {path}: {e}") from None
    if not isinstance(data, list):
        raise DataError(f"reference_file {path}: expected a JSON list of {{instruction, output}}")
    refs = {}
    for n, rec in enumerate(data):
        if not (isinstance(rec, dict) and all(isinstance(rec.get(k), str) for k in ("instruction", "output"))):
            raise DataError(f"reference_file {path}: entry {n} needs string fields instruction and output")
        refs[rec["instruction"]] = rec["output"]
    return refs


def _difficulty_map(path: str | os.PathLike) -> dict[int, float]:
    """alpaca_eval's instruction_difficulty.csv: (instruction index, difficulty) rows, a header allowed."""
    out = {}
    with open(path, newline="") as f:
        for n, row in enumerate(csv.reader(f), 1):
            try:
                out[int(row[0])] = float(row[1])
            except (ValueError, IndexError):
                if n > 1:
                    raise DataError(f"{path}:{n}: expected index,instruction_difficulty") from None
    return out


def make_judge(*, judge_url: str | None, judge_model: str | None, data_dir: str | os.PathLike | None = None,
               judge_template: str = judge_lib.DEFAULT_TEMPLATE, judge_cache: str | os.PathLike | None = None,
               judge_seed: int = 0, judge_concurrency: int = 4, **kw) -> judge_lib.Judge:
    data_dir = data_dir or (Path(os.environ["CAMEL_JAX_SHARED"]) / "data" if "CAMEL_JAX_SHARED" in os.environ
                            else None)
    if data_dir is None:
        raise judge_lib.JudgeError("the judge templates live under <data_dir>/alpaca_eval/evaluators_configs: "
                                   "pass data_dir")
    template = judge_lib.load_template(judge_template, data_dir)
    return judge_lib.Judge(judge_url, judge_model or template.default_model, template, judge_cache,
                           seed=judge_seed, concurrency=judge_concurrency, **kw)


def score(records: Sequence[dict], judge: judge_lib.Judge | None = None, *, judge_url: str | None = None,
          judge_model: str | None = None, judge_template: str = judge_lib.DEFAULT_TEMPLATE,
          judge_cache: str | os.PathLike | None = None, judge_seed: int = 0, judge_concurrency: int = 4,
          data_dir: str | os.PathLike | None = None, reference_file: str | os.PathLike | None = None,
          difficulty_file: str | os.PathLike | None = None, **_run_options: Any) -> dict:
    """Metrics from the prediction records. No judge (neither `judge` nor `judge_url`/`judge_model`): the column is
    not judged and there is no win rate. With one: win rate (ties half) ± SE over the judged pairs, counts,
    unparseable replies and refused prompts shown (never counted as ties), and the length-controlled win rate."""
    outputs = [r["answer"] for r in records]
    base = {"n_outputs": len(records),
            "avg_length": sum(map(len, outputs)) / len(outputs) if outputs else None}
    if judge is None and judge_url is None and judge_model is None:
        return {"judged": False, "status": "not judged", **base,
                "note": "no judge configured (--judge_url, --judge_model): outputs only"}
    if judge is None:
        judge = make_judge(judge_url=judge_url, judge_model=judge_model, data_dir=data_dir,
                           judge_template=judge_template, judge_cache=judge_cache, judge_seed=judge_seed,
                           judge_concurrency=judge_concurrency)
    refs = _reference_map(reference_file) if reference_file else None
    pairs = []
    for r in records:
        ins = r["meta"]["instruction"]
        if refs is not None and ins not in refs:
            raise DataError(f"reference_file {reference_file}: no output for item {r['id']}'s instruction {ins[:60]!r}")
        pairs.append({"id": r["id"], "instruction": ins, "output": r["answer"],
                      "reference": refs[ins] if refs is not None else r["gold"]["reference"]})
    judgments = judge.judge(pairs)
    ok = [(j, p) for j, p in zip(judgments, pairs) if j["preference"] is not None]
    bad = [j for j in judgments if j["preference"] is None and j["error"] is None]
    refused = [j for j in judgments if j["error"] is not None]
    out = {"judged": True, **base, **judge.describe(), "reference": str(reference_file or "eval_set"),
           "n_unparseable": len(bad), "unparseable": [{"id": j["id"], "raw": (j["raw"] or "")[:500]} for j in bad],
           "n_refused": len(refused), "refused": [{"id": j["id"], "error": j["error"]} for j in refused],
           "per_item": {j["id"]: {k: j[k] for k in ("preference", "swapped", "cached")} for j in judgments}}
    if not ok:  # the status says which: a refusal (e.g. a prompt beyond the judge's context) is not gibberish
        status = ("judge refused" if refused and not bad else "judge unparseable" if bad and not refused else
                  "judge unparseable or refused" if bad else "nothing judged")
        return {**out, "n_total": 0, "win_rate": None, "length_controlled_winrate": None, "status": status,
                "note": f"no judge answer was usable: {len(bad)} unparseable, {len(refused)} refused"}
    out.update(head2head([j["preference"] for j, _ in ok]))
    if len(ok) < 2 * N_SPLITS:
        out.update(length_controlled_winrate=None, lc_note=f"needs >= {2 * N_SPLITS} judged pairs, has {len(ok)}")
        return out
    difficulty = None
    if difficulty_file:
        dmap = _difficulty_map(difficulty_file)
        rec_by_id = {r["id"]: r for r in records}
        missing = [j["id"] for j, _ in ok if rec_by_id[j["id"]]["meta"]["index"] not in dmap]
        if missing:
            raise DataError(f"{difficulty_file}: no instruction_difficulty for items {missing[:5]}")
        difficulty = [dmap[rec_by_id[j["id"]]["meta"]["index"]] for j, _ in ok]
    out.update(length_controlled_winrate(
        [j["preference"] for j, _ in ok], [len(p["output"]) for _, p in ok], [len(p["reference"]) for _, p in ok],
        difficulty=difficulty))
    return out


def add_judge_flags(parser) -> None:
    """The judge's flags, for `evaluate` and `rescore` alike (a rescore with the same flags reuses the cache)."""
    g = parser.add_argument_group("AlpacaFarm judge (without --judge_url/--judge_model the column is not judged)")
    g.add_argument("--judge_url", default=None, help="an OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1 "
                   "(API key from $OPENAI_API_KEY if set)")
    g.add_argument("--judge_model", default=None, help="the judge's model name (default: the template's own, "
                   "gpt-4-0314 for alpaca_farm_greedy_gpt4)")
    g.add_argument("--judge_template", default=judge_lib.DEFAULT_TEMPLATE,
                   help="a folder of <data_dir>/alpaca_eval/evaluators_configs (default: the paper's "
                        "alpaca_farm_greedy_gpt4; alpaca_eval_gpt4 judges one pair per call)")
    g.add_argument("--judge_seed", type=int, default=0, help="seed of the per-pair output-order randomisation")
    g.add_argument("--judge_concurrency", type=int, default=4, help="judge requests in flight at most")
    g.add_argument("--judge_reference_file", default=None, help="reference outputs (AlpacaEval JSON list) instead "
                   "of the eval set's text-davinci-003 ones")


def judge_options(args, out_dir: str, data_dir: str) -> dict:
    """score() options from add_judge_flags' args; {} when no judge is configured. The cache lives in the run."""
    if args.judge_url is None and args.judge_model is None:
        return {}
    return {"judge_url": args.judge_url, "judge_model": args.judge_model, "judge_template": args.judge_template,
            "judge_seed": args.judge_seed, "judge_concurrency": args.judge_concurrency, "data_dir": data_dir,
            "judge_cache": os.path.join(out_dir, "alpaca_farm", "judge_cache.jsonl"),
            "reference_file": args.judge_reference_file}


SETTINGS = (
    Setting(name="alpaca_farm", group="alpaca_farm", column="AlpacaFarm win rate", metric="win_rate", kind="generate",
            chat=True, items=items, score=score, decoding=Decoding(max_new_tokens=2048), extract=extract,
            subset_key=lambda item: item.meta["dataset"], paper_bos=True),
)
