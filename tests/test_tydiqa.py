"""TyDi QA settings: the paper's per-language prompts byte for byte, its seeded sampling (sorted languages), the
512-token context truncation of both protocols with the LLaMA tokenizer, and SQuAD F1 averaged over languages."""
import json
import random

import pytest

from camel_jax.evaluate import tydiqa
from camel_jax.evaluate.task import BuildContext, tulu_wrap
from camel_jax.model.tokenizer import load_tokenizer

GOLDP, CLOSED = tydiqa.SETTINGS

KING = ("According to the U.S. Census Bureau, the county has a total area of 2,307 square miles (5,980km2), of which "
        "2,116 square miles (5,480km2) is land and 191 square miles (490km2) (8.3%) is water.[16] King County has "
        "nearly twice the land area of the state of Rhode Island. The highest point in the county is Mount Daniel at "
        "7,959 feet (2,426 meters) above sea level.")
VERACRUZ = ("With a population of 7,110,214 (2005), Veracruz is the third most populous entity in the country, after "
            "the Federal District of Mexico City and the State of Mexico. Population growth has slowed in the state in "
            "the last decades, due to lower birthrates and the exodus of migrants, mostly men. Women outnumber men. "
            "One reason for the decline in birthrates is the elevation of education levels, especially among women. "
            "Another is urbanization, with about one-third of the state's population living in urban centers, "
            "especially Veracruz, Xalapa, Coatzacoalcos, Minatitlán and Papantla. Most (90%) of the state's "
            "communities, outside of municipal seats have fewer than 500 people and contain only 21% of the total "
            "population. The migration of men outside the state has put more women into the state's workforce.[53] "
            "Approximately 75% of the population is under 45 years of age and 30% under the age of 15.[55]")
EN_SHOT_Q, EN_SHOT_A = "How large is King County, Washington?", "total area of 2,307 square miles (5,980km"
EN_Q = "What is the population of Veracruz de Ignacio de la Llave?"


@pytest.fixture(scope="module")
def tok(shared_data):
    return load_tokenizer(str(shared_data / "llama_tokenizer"))


def _ctx(data, tok, protocol="paper", chat=False):
    render = (lambda u, p, plain: tulu_wrap(u, p)) if chat else (lambda u, p, plain: plain)
    return BuildContext(data_dir=str(data), protocol=protocol, tokenizer=tok, render=render, chat=chat)


@pytest.fixture(scope="module")
def built(shared_data, tok):
    return {(s.name, proto, chat): s.items(_ctx(shared_data, tok, proto, chat))
            for s in tydiqa.SETTINGS for proto in ("paper", "fixed") for chat in (False, True)}


def _first(items, lang):
    return next(i for i in items if i.meta["lang"] == lang)


@pytest.mark.parametrize("protocol", ["paper", "fixed"])
def test_english_prompts_byte_exact(built, protocol):
    item = _first(built[("tydiqa_goldp", protocol, False)], "english")
    assert (item.id, item.gold, item.meta["exemplar"]) == (
        "english-629267894428958949-88", ["7,110,214"], "english--1348460535696370694-7")
    body = ("Answer the following question based on the information in the given passage.\n\n"
            f"Passage: {KING}\nQuestion: {EN_SHOT_Q}\nAnswer: {EN_SHOT_A}\n\n"
            f"Passage: {VERACRUZ}\nQuestion: {EN_Q}")
    assert item.prompt == body + "\nAnswer:"
    assert _first(built[("tydiqa_goldp", protocol, True)], "english").prompt == (
        "<|user|>\n" + body + "\n<|assistant|>\nAnswer:")
    body = f"Answer the following question.\n\nQuestion: {EN_SHOT_Q}\nAnswer: {EN_SHOT_A}\n\nQuestion: {EN_Q}"
    assert _first(built[("tydiqa_closed", protocol, False)], "english").prompt == body + "\nAnswer:"
    assert _first(built[("tydiqa_closed", protocol, True)], "english").prompt == (
        "<|user|>\n" + body + "\n<|assistant|>\nAnswer:")


def test_per_language_templates(built, shared_data):
    with open(shared_data / "tydiqa" / "prompt_templates.json", encoding="utf-8") as f:
        assert tydiqa.TEMPLATES == json.load(f)
    sw = _first(built[("tydiqa_closed", "paper", True)], "swahili")
    assert sw.prompt == ("<|user|>\nJibu swali lifuatalo.\n\nSwali: Je,mto mkubwa sana bara Afrika ni upi?\n"
                         "Jibu: Nile\n\nSwali: Mkoa wa Njombe uko na wakazi wangapi?\n<|assistant|>\nJibu:")
    gp = _first(built[("tydiqa_goldp", "paper", False)], "swahili").prompt
    assert gp.startswith("Jibu swali lifuatalo kulingana na habari kwenye kifungu kilichotolewa.\n\nKifungu: ")
    assert gp.count("\nSwali: ") == 2 and gp.endswith("\nJibu:")
    for lang in tydiqa.LANGUAGES:
        t = tydiqa.TEMPLATES["with_context"][lang]
        p = _first(built[("tydiqa_goldp", "fixed", False)], lang).prompt
        assert p.startswith(t["instruction"] + "\n\n" + t["passage"] + " ") and p.endswith("\n" + t["answer"])


def test_counts_and_exemplars(built):
    items = built[("tydiqa_goldp", "paper", False)]
    assert len(items) == 900 == len({i.id for i in items})
    assert [i.meta["lang"] for i in items] == [lang for lang in sorted(tydiqa.LANGUAGES) for _ in range(100)]
    assert len({tuple(i.id for i in v) for v in built.values()}) == 1
    by_lang = {}
    for i in items:
        by_lang.setdefault(i.meta["lang"], set()).add((i.meta["exemplar"], i.meta["exemplar_split"]))
    assert all(len(v) == 1 for v in by_lang.values())  # one exemplar per language
    splits = {lang: next(iter(v))[1] for lang, v in by_lang.items()}
    assert {lang for lang, s in splits.items() if s == "train"} == {"english", "korean", "swahili"}
    evaluated = {i.id for i in items}
    assert not any(next(iter(v))[0] in evaluated for v in by_lang.values())


def _squad(rows):
    return {"data": [{"title": "t", "paragraphs": [{"context": c, "qas": [{"id": i, "question": q, "answers": [
        {"text": a, "answer_start": 0}]}]} for i, c, q, a in rows]}]}


def _synthetic(tmp_path, per_language_files):
    sizes = {"arabic": 130, "bengali": 60, "english": 101, "finnish": 100}
    dev = {lang: [(f"{lang}-{n}-0", f"c {lang} {n}", f"q {n}?", f"a{n}") for n in range(k)]
           for lang, k in sizes.items()}
    train = {lang: [(f"{lang}-t{n}-0", f"tc {n}", f"tq {n}?", f"ta{n}") for n in range(7 + len(lang))]
             for lang in sizes}
    root = tmp_path / "tydiqa"
    (root / "goldp_per_language").mkdir(parents=True)
    for split, data in (("dev", dev), ("train", train)):
        if per_language_files:
            for lang, rows in data.items():
                (root / "goldp_per_language" / f"{lang}_tydiqa_{split}.json").write_text(json.dumps(_squad(rows)))
        else:
            rows = [r for lang in ("finnish", "arabic", "english", "bengali") for r in data[lang]]
            (root / f"tydiqa-goldp-v1.1-{split}.json").write_text(json.dumps(_squad(rows)))
    return dev, train


@pytest.mark.parametrize("per_language_files", [False, True])
def test_sampling_is_the_papers_seeded_loop_in_sorted_language_order(tmp_path, per_language_files):
    dev, train = _synthetic(tmp_path, per_language_files)
    random.seed(42)  # the paper's code: dev samples of every language, then one train exemplar each
    want = []
    for lang in sorted(dev):
        rows = dev[lang]
        want += random.sample(rows, 100) if len(rows) > 100 else rows
    shots = {lang: random.sample(train[lang], 1)[0] for lang in sorted(dev)}
    items = CLOSED.items(_ctx(tmp_path, None))
    assert [i.id for i in items] == [r[0] for r in want]
    assert {i.meta["lang"]: i.meta["exemplar"] for i in items} == {lang: r[0] for lang, r in shots.items()}
    first = items[0]
    shot = shots[first.meta["lang"]]
    assert first.prompt == (f"أجب على السؤال التالي.\n\nالسؤال: {shot[2]}\nالإجابة: {shot[3]}\n\n"
                            f"السؤال: {want[0][2]}\nالإجابة:")
    assert first.gold == [want[0][3]]


def test_truncation_at_512_tokens_both_protocols(tok):
    assert len(tok.encode(" ".join(["word"] * 600))) == 600  # one token a word: the cuts are countable by hand
    for n in (510, 511):  # BOS + n <= 512 tokens: untouched by both
        assert tydiqa.truncate_context(" ".join(["word"] * n), tok, "paper") == " ".join(["word"] * n)
    assert tydiqa.truncate_context(" ".join(["word"] * 512), tok, "fixed") == " ".join(["word"] * 512)
    # paper: BOS + 512 > 512, so decode(ids[:512]) = the BOS string + 511 words
    assert tydiqa.truncate_context(" ".join(["word"] * 512), tok, "paper") == "<s>" + " ".join(["word"] * 511)
    assert tydiqa.truncate_context(" ".join(["word"] * 600), tok, "paper") == "<s>" + " ".join(["word"] * 511)
    assert tydiqa.truncate_context(" ".join(["word"] * 600), tok, "fixed") == " ".join(["word"] * 512)


def test_long_real_passage_is_cut_in_the_prompt(built, shared_data, tok):
    dev = tydiqa.load_split(str(shared_data), "dev")["english"]
    long = next(e for e in dev if e["id"] == "english--2319527872315677300-3")
    assert len(tok.encode(long["context"])) > 512
    for protocol, bos in (("paper", "<s>"), ("fixed", "")):
        item = next((i for i in built[("tydiqa_goldp", protocol, False)] if i.id == long["id"]), None)
        assert item is not None
        passage = item.prompt.split("\n\nPassage: ")[-1].split("\nQuestion: ")[0]  # the test passage
        assert passage.startswith(bos) and "<s>" not in passage[len(bos):]
        passage = passage[len(bos):]
        assert long["context"].startswith(passage) and passage != long["context"]
        assert len(tok.encode(passage)) == (511 if protocol == "paper" else 512)
    assert all("<s>" not in i.prompt for i in built[("tydiqa_goldp", "fixed", False)])


def test_goldp_needs_a_tokenizer(shared_data):
    with pytest.raises(ValueError, match="tokenizer"):
        GOLDP.items(_ctx(shared_data, None))


def test_score_is_f1_per_language_averaged_unweighted():
    recs = [{"id": "sw", "answer": "The Nile.", "gold": ["Nile", "Mto Nile"], "meta": {"lang": "swahili"}}]
    recs += [{"id": f"en{n}", "answer": a, "gold": ["big red dog"], "meta": {"lang": "english"}}
             for n, a in enumerate(("red dog", "", "cat"))]
    out = tydiqa.score(recs)
    assert out["per_item"]["sw"] == {"exact_match": 1.0, "f1": 1.0}
    assert out["per_item"]["en0"] == {"exact_match": 0.0, "f1": pytest.approx(0.8)}
    assert out["per_language"]["swahili"] == {"exact_match": 100.0, "f1": 100.0, "count": 1}
    en = out["per_language"]["english"]
    assert en["exact_match"] == 0.0 and en["f1"] == pytest.approx(100 * 0.8 / 3) and en["count"] == 3
    assert out["f1"] == pytest.approx((100 + 100 * 0.8 / 3) / 2) and out["count"] == 4
    assert out["exact_match"] == 50.0
    item = _first([type("I", (), {"meta": {"lang": "x"}})()], "x")
    assert tydiqa.extract("  Nile \n", item) == "Nile"


def test_settings_declare_the_papers_decoding():
    assert (GOLDP.column, CLOSED.column, GOLDP.group, GOLDP.metric) == ("TydiQA GP", "TydiQA CB", "tydiqa", "f1")
    for s in tydiqa.SETTINGS:
        assert s.chat and (s.decoding.max_new_tokens, s.decoding.temperature, s.decoding.stop) == (50, 0.0, ("\n",))


@pytest.mark.parametrize("adds_bos", [False, True])
def test_paper_truncation_of_a_hugging_face_tokenizer_follows_its_own_defaults(tmp_path, adds_bos):
    """A tokenizer folder goes through transformers' encode/decode with default flags, as the paper's code called
    them: the BOS string appears only for a tokenizer whose default encode adds BOS; fixed never shows it."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    t = Tokenizer(models.WordLevel({"<s>": 0, "[UNK]": 1, "word": 2}, unk_token="[UNK]"))
    t.pre_tokenizer, t.decoder = pre_tokenizers.WhitespaceSplit(), decoders.WordPiece()
    if adds_bos:
        t.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 0)])
    PreTrainedTokenizerFast(tokenizer_object=t, bos_token="<s>", unk_token="[UNK]").save_pretrained(tmp_path)
    tok = load_tokenizer(str(tmp_path))
    text = " ".join(["word"] * 600)
    want = "<s> " + " ".join(["word"] * 511) if adds_bos else " ".join(["word"] * 512)
    assert tydiqa.truncate_context(text, tok, "paper") == want
    assert tydiqa.truncate_context(text, tok, "fixed") == " ".join(["word"] * 512)
    assert tydiqa.truncate_context(" ".join(["word"] * 511), tok, "paper") == " ".join(["word"] * 511)
