"""TyDi QA GoldP, gold-passage and closed-book, 1-shot (open-instruct `eval/tydiqa/run_eval.py` at 13404e37a;
open_instruct.md §4.4).

Files, under `<data_dir>/tydiqa/`: the official `tydiqa-goldp-v1.1-{dev,train}.json` (SQuAD format, what the paper
read and the download script fetches) when present, else `goldp_per_language/<lang>_tydiqa_{dev,train}.json` (the
same records split by language by sagorbrur/tydiqa-language-specific's script, which keeps the official order, so
both layouts sample the same questions). Language = `qa["id"].split("-")[0]`. Both protocols:

* **languages in sorted order.** The paper iterated `set(langs)` (string-hash order, different from run to run) with
  one `random.seed(42)` stream, so its samples are not reproducible; sorted is what open-instruct itself switched to
  (Nov 2023, #79). One `random.Random(42)`: per language `sample(dev_lang, 100)` (only if it has more than 100),
  then per language `sample(train_lang, 1)`, the exemplar of every question of that language.
* **a language without a train file** (the shared sample ships train for english, korean and swahili only) takes
  its exemplar from its own dev questions that are not evaluated and do not share an evaluated passage, from the
  same stream; item meta `exemplar_split` says "dev". Exemplars of the languages after it (in sorted order) then
  differ from a full-data run too, so such a run is not the paper's; with the official files nothing changes.
* prompt pieces: the paper's per-language templates (assets/tydiqa_prompt_templates.json):
  `header + "\\n\\n" + "{P} {ctx}\\n{Q} {q}\\n{A} {ans0}" + "\\n\\n" + "{P} {ctx}\\n{Q} {q}\\n" + A`, closed-book
  without the `{P} {ctx}\\n` parts; chat: the TÜLU wrapping of the stripped text, assistant prefix A.
* greedy, 50 new tokens, stop "\\n", answer = output.strip(); SQuAD v1.1 EM/F1 per language (max over gold
  answers), reported = unweighted mean of F1 over languages.

Context truncation to 512 tokens (test and exemplar passages) differs:

* paper: what transformers' slow LlamaTokenizer of June 2023 did: `encode(context)` adds BOS; when that is longer
  than 512 ids, `decode(ids[:512])`, whose text starts with the BOS string ("<s>") and keeps 511 passage tokens
  (`convert_tokens_to_string` writes special tokens out). A Hugging Face tokenizer folder goes through its own
  `encode`/`decode` with default flags, as the paper's code called them.
* fixed: 512 passage tokens without BOS, decoded without special tokens: no "<s>" inside the prompt.
"""
from __future__ import annotations

import functools
import json
import logging
import os
import pathlib
import random

from camel_jax.evaluate import metrics
from camel_jax.evaluate.task import BuildContext, Decoding, Item, Setting

PER_LANG = 100
SHOTS = 1
MAX_CONTEXT = 512
SEED = 42
TEMPLATES = json.loads((pathlib.Path(__file__).resolve().parents[1] / "assets" / "tydiqa_prompt_templates.json")
                       .read_text(encoding="utf-8"))
LANGUAGES = tuple(sorted(TEMPLATES["with_context"]))
log = logging.getLogger(__name__)


class TydiQADataError(ValueError):
    """A TyDi QA file that is missing or not in the GoldP (SQuAD v1.1) format (names the file)."""


def _read_squad(path: str) -> list[dict]:
    """[{id, lang, context, question, answers}] in file order (parsed once per file version; never mutated)."""
    st = os.stat(path)
    return _parse_squad(path, st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=32)
def _parse_squad(path: str, _mtime: int, _size: int) -> list[dict]:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)["data"]
        return [{"id": qa["id"], "lang": qa["id"].split("-")[0], "context": p["context"],
                 "question": qa["question"], "answers": [a["text"] for a in qa["answers"]]}
                for article in data for p in article["paragraphs"] for qa in p["qas"]]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise TydiQADataError(f"{path}: not a TyDi QA GoldP (SQuAD v1.1) file ({e})") from None


def load_split(data_dir: str, split: str) -> dict[str, list[dict]]:
    """{lang: examples} of one split, from the official file or the per-language files (empty where absent)."""
    root = os.path.join(data_dir, "tydiqa")
    whole = os.path.join(root, f"tydiqa-goldp-v1.1-{split}.json")
    if os.path.isfile(whole):
        examples = _read_squad(whole)
    else:
        examples = []
        for lang in LANGUAGES:
            path = os.path.join(root, "goldp_per_language", f"{lang}_tydiqa_{split}.json")
            if os.path.isfile(path):
                examples += _read_squad(path)
    by_lang: dict[str, list[dict]] = {}
    for e in examples:
        by_lang.setdefault(e["lang"], []).append(e)
    unknown = sorted(set(by_lang) - set(LANGUAGES))
    if unknown:
        raise TydiQADataError(f"{root}: {split} has languages without a prompt template: {unknown}")
    for lang, rows in by_lang.items():
        bad = next((e["id"] for e in rows if not e["answers"]), None)
        if bad is not None:
            raise TydiQADataError(f"{root}: {split} question {bad} has no answer")
    return by_lang


def truncate_context(text: str, tokenizer, protocol: str, limit: int = MAX_CONTEXT) -> str:
    """The passage as the prompt holds it (see the module docstring for the two protocols)."""
    if protocol == "paper":
        hf = getattr(tokenizer, "_hf", None)
        if hf is not None:
            ids = hf.encode(text)
            return hf.decode(ids[:limit]) if len(ids) > limit else text
        ids = tokenizer.encode(text, add_bos=True)
        if len(ids) <= limit:
            return text
        return tokenizer.id_to_piece(tokenizer.bos_id) + tokenizer.decode(ids[1:limit])
    ids = tokenizer.encode(text)
    return tokenizer.decode(ids[:limit]) if len(ids) > limit else text


def sample(data_dir: str) -> tuple[list[dict], dict[str, tuple[dict, str]]]:
    """(evaluated examples in order, {lang: (exemplar, split it came from)}) — the seeded draws of both settings."""
    dev, train = load_split(data_dir, "dev"), load_split(data_dir, "train")
    if not dev:
        raise TydiQADataError(f"{os.path.join(data_dir, 'tydiqa')}: no dev data (expected tydiqa-goldp-v1.1-dev.json "
                              f"or goldp_per_language/<lang>_tydiqa_dev.json)")
    rng = random.Random(SEED)
    langs = sorted(dev)
    picked = {lang: rng.sample(dev[lang], PER_LANG) if len(dev[lang]) > PER_LANG else list(dev[lang])
              for lang in langs}
    shots, borrowed = {}, []
    for lang in langs:
        if train.get(lang):
            shots[lang] = (rng.sample(train[lang], SHOTS)[0], "train")
            continue
        used = {e["context"] for e in picked[lang]}
        pool = [e for e in dev[lang] if e["context"] not in used]
        if not pool:
            raise TydiQADataError(f"{data_dir}/tydiqa: {lang} has no train data and no spare dev question "
                                  f"for its exemplar")
        borrowed.append(lang)
        shots[lang] = (rng.sample(pool, SHOTS)[0], "dev")
    if borrowed:
        log.warning("tydiqa: no train data for %s; their 1-shot exemplars come from unevaluated dev questions",
                    ", ".join(borrowed))
    return [e for lang in langs for e in picked[lang]], shots


def _items(ctx: BuildContext, with_context: bool) -> list[Item]:
    examples, shots = sample(ctx.data_dir)
    if with_context and ctx.tokenizer is None:
        raise ValueError("tydiqa_goldp needs the model's tokenizer (context truncation to 512 tokens)")
    cache: dict[str, str] = {}

    def passage(text: str) -> str:
        if text not in cache:
            cache[text] = truncate_context(text, ctx.tokenizer, ctx.protocol)
        return cache[text]

    items = []
    for e in examples:
        lang = e["lang"]
        t = TEMPLATES["with_context" if with_context else "without_context"][lang]
        shot, split = shots[lang]
        if with_context:
            demo = f"{t['passage']} {passage(shot['context'])}\n{t['question']} {shot['question']}\n" \
                   f"{t['answer']} {shot['answers'][0]}"
            query = f"{t['passage']} {passage(e['context'])}\n{t['question']} {e['question']}\n"
        else:
            demo = f"{t['question']} {shot['question']}\n{t['answer']} {shot['answers'][0]}"
            query = f"{t['question']} {e['question']}\n"
        user = t["instruction"] + "\n\n" + demo + "\n\n" + query
        items.append(Item(id=e["id"], prompt=ctx.render(user, t["answer"], user + t["answer"]), gold=e["answers"],
                          meta={"lang": lang, "exemplar": shot["id"], "exemplar_split": split}))
    return items


def extract(text: str, item: Item) -> str:
    return text.strip()


def score(records, **_options) -> dict:
    """SQuAD EM and F1 per language (0-100), their unweighted means over languages ("f1" is reported), and each
    record's EM and F1 (0-1, `per_item`)."""
    by_lang: dict[str, list[tuple[float, float]]] = {}
    per_item = {}
    for r in records:
        em, f1 = metrics.squad_scores(r["answer"], r["gold"])
        by_lang.setdefault(r["meta"]["lang"], []).append((em, f1))
        per_item[r["id"]] = {"exact_match": em, "f1": f1}
    per_lang = {lang: {"exact_match": 100.0 * sum(em for em, _ in s) / len(s),
                       "f1": 100.0 * sum(f1 for _, f1 in s) / len(s), "count": len(s)}
                for lang, s in sorted(by_lang.items())}
    mean = {k: sum(v[k] for v in per_lang.values()) / len(per_lang) if per_lang else 0.0 for k in ("f1", "exact_match")}
    return {**mean, "per_language": per_lang, "count": len(per_item), "per_item": per_item}


def _setting(with_context: bool) -> Setting:
    return Setting(name="tydiqa_goldp" if with_context else "tydiqa_closed", group="tydiqa",
                   column="TydiQA GP" if with_context else "TydiQA CB", metric="f1", kind="generate", chat=True,
                   items=lambda ctx: _items(ctx, with_context), score=score,
                   decoding=Decoding(max_new_tokens=50, stop=("\n",)), extract=extract,
                   subset_key=lambda item: item.meta["lang"])


SETTINGS = (_setting(with_context=True), _setting(with_context=False))
