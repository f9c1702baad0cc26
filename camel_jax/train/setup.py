"""What a run needs before its first step: weights, tokenizer, data with a held-out split, and the before/after
greedy samples, for the model `spec.resolve_run` chose. Kept apart from the loop so the loop reads as the training
algorithm only. Nothing is written to the output dir until the data has been read.

Where the weights come from (`init_from`): a checkpoint dir from `convert import-hf`/`import-llama2c` (or a training
output dir), the bundled stories260K imported in memory (`builtin:stories260k`), or nothing (random init from the
preset: tests and benchmarks only, said loudly).
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
from typing import Any, Callable

import jax
import numpy as np
from ml_collections import ConfigDict

from camel_jax import storage
from camel_jax.model.config import LlamaConfig
from camel_jax.train import config as C
from camel_jax.train import distributed as D
from camel_jax.train.spec import RunSpec

ASSETS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "assets")
STORIES_DIR = os.path.join(ASSETS, "stories260k")
_TMP_TOKENIZER = "camel_jax_stories_tok_"


@dataclasses.dataclass
class Setup:
    model_cfg: LlamaConfig
    tokenizer: Any
    data: Any  # camel_jax.data.pipeline.TrainData
    holdout: list[list[dict]]  # held-out conversations (their user turns are the sample prompts)
    prompts: list[str]
    max_new_tokens: int
    enabled: bool
    _params: Callable[[Any], Any]
    _source: str

    def load_params(self, shardings: Any) -> Any:
        """The starting weights, placed with `shardings`, cast to the run's param dtype."""
        import jax.numpy as jnp

        params = self._params(shardings)
        dt = jnp.dtype(self.model_cfg.param_dtype)
        return jax.tree.map(lambda x, s: jax.device_put(jnp.asarray(x, dt), s), params, shardings)

    def show_samples(self, label: str, params: Any, say: Callable[[str], None]) -> None:
        """Greedy answers to the held-out instructions and the config's prompts, in the TÜLU chat format."""
        instructions = [conv[0]["content"] for conv in self.holdout] + list(self.prompts)
        if not self.enabled or not instructions:
            return
        if jax.process_count() > 1:  # generate.py gathers its output on one host; sample from the checkpoint instead
            say(f"(greedy samples {label} are shown in single-process runs; use python -m camel_jax.generate)")
            return
        from camel_jax.generate import greedy_generate

        tok = self.tokenizer
        prompts = [tok.encode(f"<|user|>\n{p.strip()}\n<|assistant|>\n", add_bos=True) for p in instructions]
        ids = greedy_generate(params, self.model_cfg, prompts, self.max_new_tokens, eos_id=tok.eos_id)
        outs = [tok.decode([i for i in x if i != tok.eos_id]) for x in ids]
        say(f"--- greedy responses {label} ---")
        for i, (p, o) in enumerate(zip(instructions, outs)):
            kind = "held-out" if i < len(self.holdout) else "prompt"
            say(f"[{kind}] {p.strip()[:200]!r}\n  -> {o.strip()[:300]!r}")

    def export_hf(self, step_dir: str, out_dir: str) -> str:
        from camel_jax.convert.hf import export_hf

        if D.is_main():
            export_hf(step_dir, out_dir)
        D.barrier("export_hf")
        return storage.resolve(out_dir)


def split_holdout(records: list[dict], n: int, seed: int) -> tuple[list[dict], list[dict]]:
    """(train, held out): `n` single-turn records with short prompts, chosen by seed, never trained on."""
    if n <= 0:
        return records, []
    ok = [i for i, r in enumerate(records) if len(r.get("messages", [])) == 2
          and r["messages"][0].get("role") == "user" and len(r["messages"][0].get("content", "")) <= 300]
    if len(ok) < n:
        raise C.ConfigError(f"config.data.holdout={n}: only {len(ok)} short single-turn records to hold out")
    picked = set(np.random.default_rng(seed).choice(ok, size=n, replace=False).tolist())
    return [r for i, r in enumerate(records) if i not in picked], [records[i] for i in sorted(picked)]


def _model(cfg: ConfigDict, spec: RunSpec, say) -> tuple[Any, Callable[[Any], Any], str]:
    """(tokenizer, params loader, tokenizer dir to copy) for the architecture `spec` resolved."""
    from camel_jax.model.tokenizer import load_tokenizer

    src = cfg.init_from
    if spec.source == "builtin":
        import tempfile

        from camel_jax.convert.llama2c import read_model, read_tokenizer, sentencepiece_model

        model_bin, tok_bin = (os.path.join(STORIES_DIR, f) for f in ("stories260K.bin", "tok512.bin"))
        params, arch = read_model(model_bin)
        tok_dir = tempfile.mkdtemp(prefix=_TMP_TOKENIZER)
        with open(os.path.join(tok_dir, "tokenizer.model"), "wb") as f:
            f.write(sentencepiece_model(read_tokenizer(tok_bin, arch.vocab_size), tok_bin))
        tokenizer = load_tokenizer(tok_dir)
        _check_special_ids(spec.model, tokenizer, tok_dir)
        say(f"init: stories260K imported in memory from {STORIES_DIR} (llama2.c, Meta rotary layout permuted)")
        return tokenizer, (lambda shardings: params), tok_dir
    if spec.source == "checkpoint":
        from camel_jax.params_io import load_params

        tok_dir = cfg.data.tokenizer or storage.join(src, "tokenizer")
        where = "config.data.tokenizer" if cfg.data.tokenizer else "--init_from"
        return (_tokenizer(tok_dir, where, spec.model),
                (lambda shardings: load_params(src, shardings=shardings)[0]), tok_dir)
    if not cfg.data.tokenizer:
        raise C.ConfigError("config.init_from is empty (random init) and config.data.tokenizer is empty: "
                            "give --init_from=CKPT_DIR or --config.data.tokenizer=PATH")
    from camel_jax.model.llama import init_params

    say(f"WARNING: no --init_from: training {cfg.model} from RANDOM weights (seed {cfg.train.seed})")
    mcfg = spec.model
    return (_tokenizer(cfg.data.tokenizer, "config.data.tokenizer", mcfg),
            (lambda shardings: jax.jit(init_params, static_argnums=0, out_shardings=shardings)(
                mcfg, jax.random.PRNGKey(cfg.train.seed))), cfg.data.tokenizer)


def _tokenizer(path: str, where: str, mcfg: LlamaConfig) -> Any:
    """The tokenizer at `path`; a missing or unreadable one, or one larger than the model's vocabulary, is a
    ConfigError naming the field or flag."""
    from camel_jax.model.tokenizer import load_tokenizer

    try:
        local = storage.local_copy(path, prefix=_TMP_TOKENIZER)
        try:
            tok = load_tokenizer(local)
        finally:
            if local != path:  # sentencepiece has read the copy of a bucket's tokenizer
                shutil.rmtree(os.path.dirname(local), ignore_errors=True)
    except (OSError, RuntimeError, ValueError) as e:
        raise C.ConfigError(f"{where}: tokenizer {path}: {e}") from None
    _check_vocab(mcfg, tok, where)
    return tok


def _check_vocab(mcfg: LlamaConfig, tokenizer: Any, where: str) -> None:
    """An id past vocab_size would look up a zero padding row (model/vocab.py) and, as a target, train against a
    masked logit."""
    if tokenizer.vocab_size > mcfg.vocab_size:
        raise C.ConfigError(f"{where}: the tokenizer has {tokenizer.vocab_size} tokens but the model's vocabulary "
                            f"is {mcfg.vocab_size}")


def _check_special_ids(mcfg: LlamaConfig, tokenizer: Any, where: str) -> None:
    _check_vocab(mcfg, tokenizer, where)
    if (mcfg.bos_token_id, mcfg.eos_token_id) != (tokenizer.bos_id, tokenizer.eos_id):
        raise C.ConfigError(f"{where}: tokenizer BOS/EOS {tokenizer.bos_id}/{tokenizer.eos_id} differ from the "
                            f"model's {mcfg.bos_token_id}/{mcfg.eos_token_id}")


def _write_once(output_dir: str, mcfg: LlamaConfig, tok_dir: str | None) -> None:
    """<out>/model_config.json and <out>/tokenizer/ (what load_params/export need next to the checkpoints).
    Both appear atomically (written aside, then renamed), so a run killed here never leaves half a tokenizer."""
    from camel_jax.params_io import config_to_dict

    storage.makedirs(output_dir)
    storage.write_text(storage.join(output_dir, "model_config.json"), json.dumps(config_to_dict(mcfg), indent=1))
    dst = storage.join(output_dir, "tokenizer")
    if tok_dir and not storage.exists(dst):
        storage.copy_dir(tok_dir, dst)


def prepare(cfg: ConfigDict, spec: RunSpec, output_dir: str, say: Callable[[str], None]) -> Setup:
    """Tokenizer, data and weights loader for the run `spec` resolved; the output dir gets its files only once the
    data is read, so a data error leaves nothing behind."""
    from camel_jax.data.mixtures import source_files

    source_files(cfg.data.mixture, cfg.data.data_dir or None, flag_name="--config.data.data_dir")  # before loading
    tokenizer, params_fn, tok_dir = _model(cfg, spec, say)
    try:
        from camel_jax.data.pipeline import TrainData, mixture_records

        records = mixture_records(cfg.data.mixture, cfg.data.data_dir or None)
        train, held = split_holdout(records, cfg.data.holdout, cfg.train.seed)
        # the token cache is a local file (np.load); with a bucket for output the tokens are rebuilt at each start
        data = TrainData(train, tokenizer, max_seq_length=cfg.data.max_seq_length, batch_size=cfg.train.batch_size,
                         packing=cfg.data.packing, seed=cfg.train.seed, by_rate=cfg.data.mixture_rates,
                         cache_dir=None if storage.is_remote(output_dir) else os.path.join(output_dir, "data_cache"))
        if D.is_main():
            _write_once(output_dir, spec.model, tok_dir)
        D.barrier("setup_written")
    finally:
        if os.path.basename(tok_dir).startswith(_TMP_TOKENIZER):  # the in-memory import's tokenizer is loaded
            shutil.rmtree(tok_dir, ignore_errors=True)
    say(f"data {cfg.data.mixture}: {data.describe()}" + (f"; {len(held)} held out" if held else ""))
    return Setup(spec.model, tokenizer, data, [r["messages"] for r in held], list(cfg.sample.prompts),
                 cfg.sample.max_new_tokens, cfg.sample.enabled, params_fn, cfg.init_from)
