"""Token-level tests of the TÜLU chat format with the real LLaMA tokenizer (../shared/data/llama_tokenizer).

The reference below is open-instruct's encode_with_messages_format transcribed literally (prefix tokenization of
every non-assistant message), driven by two whole-string tokenizers: transformers 5's AutoTokenizer on the LLaMA
folder (the newline-after-</s> kept) and an emulation of transformers 4.30's slow tokenizer (split at "</s>",
strip whitespace on both sides, SentencePiece on each piece; the newline vanishes).
"""
import json

import numpy as np
import pytest

from camel_jax.data.chat_format import DropCounter, encode_messages, format_messages, supervised_text
from camel_jax.model.tokenizer import load_tokenizer

ONE_TURN = [{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hello! How can I help?"}]
# tokenizer_notes.md / open_instruct.md §3.1 (transformers 4.30 and 5.x agree on it)
ONE_TURN_IDS = [1, 529, 29989, 1792, 29989, 29958, 13, 18567, 727, 13, 29966, 29989, 465, 22137, 29989, 29958, 13,
                10994, 29991, 1128, 508, 306, 1371, 29973, 2]
TWO_TURNS = ONE_TURN + [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"}]


@pytest.fixture(scope="module")
def sp_tok(shared_data):
    return load_tokenizer(str(shared_data / "llama_tokenizer"))


@pytest.fixture(scope="module")
def hf_full(shared_data):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(str(shared_data / "llama_tokenizer"))


def _split_tokenize(sp_tok, strip):
    """A whole-string tokenizer that treats '</s>' as a special token, as Hugging Face tokenizers do.

    strip=True: transformers<=4.33 slow LlamaTokenizer ('</s>' registered as a str eats the whitespace around it).
    strip=False: later versions (the whitespace stays). SentencePiece encodes each piece, as tokenizer_notes.md
    asks (transformers 5's converted backend differs from SentencePiece on runs of spaces).
    """
    def tok(text, max_len):
        ids = [1]
        parts = text.split("</s>")
        for j, part in enumerate(parts):
            if strip:
                part = part.lstrip() if j > 0 else part
                part = part.rstrip() if j < len(parts) - 1 else part
            ids += sp_tok.encode(part) if part else []
            if j < len(parts) - 1:
                ids.append(2)
        return ids[:max_len]
    return tok


def _reference(tokenize, messages, max_len):
    """open-instruct finetune.py encode_with_messages_format, line by line."""
    def concat(msgs):
        out = ""
        for m in msgs:
            out += {"system": "<|system|>\n", "user": "<|user|>\n"}.get(m["role"], "<|assistant|>\n")
            out += m["content"].strip() + ("</s>" if m["role"] == "assistant" else "") + "\n"
        return out
    ids = tokenize(concat(messages).strip(), max_len)
    labels = list(ids)
    for i, m in enumerate(messages):
        if m["role"] == "assistant":
            continue
        start = 0 if i == 0 else len(tokenize(concat(messages[:i]), max_len))
        if i < len(messages) - 1 and messages[i + 1]["role"] == "assistant":
            end = len(tokenize(concat(messages[:i + 1]) + "<|assistant|>\n", max_len))
        else:
            end = len(tokenize(concat(messages[:i + 1]), max_len))
        labels[start:end] = [-100] * len(labels[start:end])
        if end >= max_len:
            break
    return np.array(ids), (np.array(labels) != -100).astype(np.int8)


def _real_conversations(shared_data, n_sharegpt=40):
    convs = []
    for line in (shared_data / "dolly" / "databricks-dolly-15k.head34.jsonl").read_text().splitlines()[:15]:
        r = json.loads(line)
        user = r["instruction"] + ("\n\n" + r["context"] if r["context"].strip() else "")
        convs.append([{"role": "user", "content": user}, {"role": "assistant", "content": r["response"]}])
    role = {"human": "user", "gpt": "assistant"}
    raw = json.loads((shared_data / "sharegpt" / "ShareGPT_V3_unfiltered_cleaned_split.head.json").read_text())
    for item in raw:
        turns = item["conversations"]
        if not turns or [t["from"] for t in turns] != ["human", "gpt"] * (len(turns) // 2):
            continue  # keep what the ShareGPT converter keeps: strictly alternating, human first
        text = "".join(t["value"] for t in turns)
        if any(s in text for s in ("<s>", "</s>", "<unk>")):  # HF would turn these into control tokens
            continue
        convs.append([{"role": role[t["from"]], "content": t["value"]} for t in turns])
        if len(convs) >= 15 + n_sharegpt:
            break
    convs.append([{"role": "system", "content": "Be terse."}] + TWO_TURNS)
    convs.append(TWO_TURNS + [{"role": "user", "content": "Thanks"}])  # trailing user turn
    convs.append([{"role": "assistant", "content": "Hi"}, {"role": "assistant", "content": "again"}])
    convs.append([{"role": "user", "content": "q"}, {"role": "assistant", "content": ""},
                  {"role": "user", "content": "q2"}, {"role": "assistant", "content": "a2"}])
    return convs


def test_known_conversation_ids(sp_tok):
    ids, mask = encode_messages(sp_tok, ONE_TURN, 2048)
    assert ids.dtype == np.int32 and mask.dtype == np.int8
    assert ids.tolist() == ONE_TURN_IDS
    assert mask.tolist() == [0] * 17 + [1] * 8  # "Hello ! ▁How ▁can ▁I ▁help ? </s>"
    for newline in (False, True):
        ids2, mask2 = encode_messages(sp_tok, TWO_TURNS, 2048, newline_after_eos=newline)
        eos_at = ONE_TURN_IDS.index(2)
        assert ids2[:eos_at + 1].tolist() == ONE_TURN_IDS
        after = ids2[eos_at + 1:eos_at + 4].tolist()
        # §3.1: under transformers<=4.33 '</s>' is followed directly by '▁<' (529) of the next '<|user|>'
        assert after == ([29871, 13, 29966] if newline else [529, 29989, 1792])
        assert supervised_text(sp_tok, ids2, mask2)[-1].endswith("4</s>")


@pytest.mark.parametrize("newline", [False, True])
def test_supervised_tokens_decode_to_assistant_contents(sp_tok, shared_data, newline):
    checked = 0
    for conv in _real_conversations(shared_data)[:40]:
        out = encode_messages(sp_tok, conv, 100_000, newline_after_eos=newline)
        assert out is not None
        ids, mask = out
        spans = supervised_text(sp_tok, ids, mask)
        if newline and len([m for m in conv if m["role"] == "assistant"]) > 1:
            # the "▁\n" after a mid-conversation </s> is trained with the turn before it (open-instruct's prefixes)
            spans = [s.rstrip("\n") for s in spans]
        expected = [m["content"].strip() + "</s>" for m in conv if m["role"] == "assistant"]
        assert spans == expected
        checked += 1
    assert checked == 40


@pytest.mark.parametrize("newline", [False, True])
def test_matches_open_instruct(sp_tok, shared_data, newline):
    ref_tok = _split_tokenize(sp_tok, strip=not newline)
    for max_len in (2048, 200, 40):
        for conv in _real_conversations(shared_data):
            ref_ids, ref_mask = _reference(ref_tok, conv, max_len)
            out = encode_messages(sp_tok, conv, max_len, newline_after_eos=newline)
            if not ref_mask.any():
                assert out is None
                continue
            assert out is not None, conv
            assert out[0].tolist() == ref_ids.tolist()
            assert out[1].tolist() == ref_mask.tolist()


def test_hf_tokenizer_dir_matches_open_instruct_under_transformers5(hf_full, tmp_path, shared_data):
    hf_full.save_pretrained(tmp_path)
    (tmp_path / "tokenizer.model").unlink(missing_ok=True)
    hf_tok = load_tokenizer(str(tmp_path))
    assert hf_tok._sp is None  # really the Hugging Face path
    for newline in (False, True):
        assert encode_messages(hf_tok, ONE_TURN, 2048, newline_after_eos=newline)[0].tolist() == ONE_TURN_IDS

    def tok(text, max_len):
        return hf_full(text, max_length=max_len, truncation=True).input_ids
    for max_len in (2048, 64):
        for conv in _real_conversations(shared_data, n_sharegpt=20):
            ref_ids, ref_mask = _reference(tok, conv, max_len)
            out = encode_messages(hf_tok, conv, max_len, newline_after_eos=True)
            if not ref_mask.any():
                assert out is None
                continue
            assert out[0].tolist() == ref_ids.tolist()
            assert out[1].tolist() == ref_mask.tolist()


def test_eos_is_the_id_and_content_stays_text(sp_tok):
    conv = [{"role": "user", "content": "say </s>"}, {"role": "assistant", "content": "ok </s> done"}]
    ids, mask = encode_messages(sp_tok, conv, 2048)
    assert ids.tolist().count(2) == 1 and ids[-1] == 2 and mask[-1] == 1
    assert format_messages(conv) == "<|user|>\nsay </s>\n<|assistant|>\nok </s> done</s>"


def test_truncation_and_drop_reasons(sp_tok):
    drops = DropCounter()
    ids, mask = encode_messages(sp_tok, ONE_TURN, 20, drops=drops)
    assert ids.tolist() == ONE_TURN_IDS[:20] and mask.tolist() == [0] * 17 + [1] * 3
    assert encode_messages(sp_tok, ONE_TURN, 17, drops=drops) is None
    assert encode_messages(sp_tok, [{"role": "user", "content": "hi"}], 64, drops=drops) is None
    assert encode_messages(sp_tok, [{"role": "user", "content": "q"}, {"role": "assistant", "content": ""}],
                           64, drops=drops) is None  # v1: the empty answer's </s> is masked by the prefix arithmetic
    assert drops == {"truncated_before_assistant": 1, "no_assistant_message": 1, "no_trainable_tokens": 1}
    assert drops.total_dropped() == 3


def test_bad_messages_raise(sp_tok):
    with pytest.raises(ValueError, match="empty conversation"):
        encode_messages(sp_tok, [], 64)
    with pytest.raises(ValueError, match="message 1: unknown role 'bot'"):
        encode_messages(sp_tok, [{"role": "user", "content": "a"}, {"role": "bot", "content": "b"}], 64)
    with pytest.raises(ValueError, match="message 0: content must be a string"):
        encode_messages(sp_tok, [{"role": "user", "content": None}], 64)
    with pytest.raises(ValueError, match="message 0: expected a dict"):
        encode_messages(sp_tok, ["hello"], 64)
