"""One tokenizer interface over SentencePiece models and Hugging Face tokenizer folders.

SentencePiece is used directly whenever a `tokenizer.model` is present: transformers 5.x re-converts LLaMA's
model to a `tokenizers` backend and, loaded from a bare file, silently changes the token stream
(see ../shared/reference/tokenizer_notes.md). A folder without `tokenizer.model` goes through AutoTokenizer.
"""
from __future__ import annotations

import os
from typing import Sequence


class Tokenizer:
    """encode() never adds BOS/EOS on its own; callers say what they want, so both backends agree."""

    def __init__(self, path: str):
        self.path = path
        model = path if path.endswith(".model") else os.path.join(path, "tokenizer.model")
        if os.path.isfile(model):
            import sentencepiece as spm

            self._sp = spm.SentencePieceProcessor(model_file=model)
            self._hf = None
            self.vocab_size = self._sp.get_piece_size()
            self.bos_id, self.eos_id = self._sp.bos_id(), self._sp.eos_id()
            self.unk_id = self._sp.unk_id()
        elif os.path.isdir(path) and any(os.path.isfile(os.path.join(path, f))
                                         for f in ("tokenizer.json", "tokenizer_config.json")):
            from transformers import AutoTokenizer

            self._sp = None
            self._hf = AutoTokenizer.from_pretrained(path)
            self.vocab_size = len(self._hf)
            self.bos_id, self.eos_id = self._hf.bos_token_id, self._hf.eos_token_id
            self.unk_id = self._hf.unk_token_id
        else:
            raise FileNotFoundError(f"no tokenizer at {path!r}: expected a tokenizer.model file or a Hugging Face "
                                    f"tokenizer folder (tokenizer.json / tokenizer_config.json)")
        self.eos_token = "</s>" if self._sp is not None else self._hf.eos_token

    def encode(self, text: str, add_bos: bool = False) -> list[int]:
        if self._sp is not None:
            ids = self._sp.encode(text)
        else:
            ids = self._hf.encode(text, add_special_tokens=False)
        return ([self.bos_id] if add_bos else []) + list(ids)

    def decode(self, ids: Sequence[int]) -> str:
        ids = [int(i) for i in ids]
        if self._sp is not None:
            return self._sp.decode(ids)
        return self._hf.decode(ids, skip_special_tokens=True)

    def id_to_piece(self, i: int) -> str:
        if self._sp is not None:
            return self._sp.id_to_piece(int(i))
        return self._hf.convert_ids_to_tokens(int(i))


def load_tokenizer(path: str) -> Tokenizer:
    return Tokenizer(path)
