"""stories260K (a real pretrained LLaMA-architecture model, bundled) with its real 512-piece tokenizer, as one engine
and one scorer per test session: the serving tests (driver, server, chat CLI) share them, so each program compiles
once. An engine is only ever driven by one owner at a time (its offline runs, or one Driver)."""
from __future__ import annotations

_SHARED: dict = {}
MAX_LEN = 256
SLOTS = 4


def stories(tmp_path_factory):
    """(checkpoint dir, Engine(slots=4, max_len=256, tokenizer), Scorer(batch_size=1, max_len=256))."""
    if not _SHARED:
        import jax

        from test_llama2c import STORIES_BIN, TOK512_BIN
        from camel_jax import params_io
        from camel_jax.convert.llama2c import import_llama2c
        from camel_jax.infer.engine import Engine
        from camel_jax.infer.scoring import Scorer
        from camel_jax.model.tokenizer import load_tokenizer

        path = str(tmp_path_factory.mktemp("stories") / "ckpt")
        import_llama2c(STORIES_BIN, TOK512_BIN, path)
        params, cfg = params_io.load_params(path)
        params, cfg = jax.device_put(params), cfg.replace(dtype="float32")
        tok = load_tokenizer(params_io.tokenizer_dir(path))
        _SHARED.update(ckpt=path, engine=Engine(params, cfg, slots=SLOTS, max_len=MAX_LEN, tokenizer=tok),
                       scorer=Scorer(params, cfg, batch_size=1, max_len=MAX_LEN))
    return _SHARED["ckpt"], _SHARED["engine"], _SHARED["scorer"]
