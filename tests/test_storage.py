"""camel_jax.storage against a GCS emulator on 127.0.0.1 (fake-gcs-server): the same calls on a local folder and in
a bucket, checked through the emulator's own JSON API; the metrics log rewound and rewritten whole in a bucket; and
`--init_from` a training output in a bucket (architecture, tokenizer, weights). The training run writing to and
resuming from a bucket, across process counts, is in test_loop.py."""
import json
import os

import jax
import numpy as np
import pytest

import gcs_util
from camel_jax import storage


@pytest.fixture(scope="module")
def gcs(tmp_path_factory):
    """The emulator, with this process's environment pointed at it for the module's tests."""
    gcs_util.require()
    server = gcs_util.Emulator(str(tmp_path_factory.mktemp("gcs")))
    saved = {k: os.environ.get(k) for k in gcs_util.env(server)}
    os.environ.update(gcs_util.env(server))
    gcs_util.forget_clients()
    try:
        yield server
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        server.stop()


def test_flags_name_unsupported_schemes():
    storage.check("/tmp/x", "--output_dir")
    storage.check("gs://b/x", "--output_dir")
    with pytest.raises(ValueError, match="--init_from=s3://b/x: only local paths and gs://"):
        storage.check("s3://b/x", "--init_from")
    assert storage.resolve("gs://b/run/") == "gs://b/run" and storage.resolve("rel") == os.path.abspath("rel")
    assert storage.join("gs://b/run", "checkpoints", "2") == "gs://b/run/checkpoints/2"
    assert storage.basename("gs://b/run/") == "run" and storage.parent("gs://b/run/ckpt") == "gs://b/run"


def test_the_same_calls_work_locally_and_in_a_bucket(gcs, tmp_path):
    src = tmp_path / "tok"
    src.mkdir()
    (src / "tokenizer.model").write_bytes(bytes(range(256)) * 4)
    (src / "special.json").write_text('{"a": 1}')
    for base in (str(tmp_path / "local"), f"gs://{gcs_util.BUCKET}/t1"):
        storage.makedirs(base)
        storage.write_text(storage.join(base, "model_config.json"), '{"x": 1}')
        storage.write_text(storage.join(base, "model_config.json"), '{"x": 2}')  # replaced whole
        storage.copy_dir(str(src), storage.join(base, "tokenizer"))
        assert json.loads(storage.read_text(storage.join(base, "model_config.json"))) == {"x": 2}
        assert storage.listdir(base) == ["model_config.json", "tokenizer"]
        assert storage.isdir(storage.join(base, "tokenizer")) and storage.isfile(storage.join(base, "model_config.json"))
        assert not storage.exists(storage.join(base, "nothing"))
        local = storage.local_copy(storage.join(base, "tokenizer"))
        assert sorted(os.listdir(local)) == ["special.json", "tokenizer.model"]
        assert open(os.path.join(local, "tokenizer.model"), "rb").read() == (src / "tokenizer.model").read_bytes()
        one = storage.local_copy(storage.join(base, "tokenizer", "special.json"))
        assert os.path.isfile(one) and open(one).read() == '{"a": 1}'
    assert gcs_util.objects(gcs, "t1/") == ["t1/model_config.json", "t1/tokenizer/special.json",
                                            "t1/tokenizer/tokenizer.model"]


def test_metrics_log_in_a_bucket_is_rewound_on_resume(gcs):
    from camel_jax.train.metrics import MetricsWriter

    out = f"gs://{gcs_util.BUCKET}/metrics_run"
    w = MetricsWriter(out, total_steps=4, progress=False, stream=open(os.devnull, "w"))
    for step in (1, 2, 3):
        w.log(step, {"loss": float(step)}, 0.1, 10)
    w.flush()
    assert [json.loads(x)["step"] for x in storage.read_text(f"{out}/metrics.jsonl").splitlines()] == [1, 2, 3]
    w.close()
    # a run resumed from the checkpoint of step 2 replays step 3: the log is rewound first, then rewritten whole
    w = MetricsWriter(out, total_steps=4, start_step=2, progress=False, stream=open(os.devnull, "w"))
    assert [json.loads(x)["step"] for x in storage.read_text(f"{out}/metrics.jsonl").splitlines()] == [1, 2]
    w.log(3, {"loss": 3.5}, 0.1, 10)
    w.log(4, {"loss": 4.0}, 0.1, 10)
    w.close()
    recs = [json.loads(x) for x in storage.read_text(f"{out}/metrics.jsonl").splitlines()]
    assert [(r["step"], r["loss"]) for r in recs] == [(1, 1.0), (2, 2.0), (3, 3.5), (4, 4.0)]
    events = [n for n in gcs_util.objects(gcs, "metrics_run/tensorboard/") if "tfevents" in n]
    assert [n.rsplit(".", 1)[-1] for n in events] == ["from_step_0", "from_step_2"]  # one per start

    local = storage.local_copy(f"gs://{gcs_util.BUCKET}/{events[1]}")
    assert _scalars(local, "train/loss") == [(3, 3.5), (4, 4.0)]


def _scalars(path: str, tag: str) -> list[tuple[int, float]]:
    """(step, value) of `tag` in a TensorBoard event file (TFRecord framing: length, its CRC, the Event, its CRC)."""
    import struct

    from tensorboardX.proto.event_pb2 import Event

    data, out, i = open(path, "rb").read(), [], 0
    while i < len(data):
        (n,) = struct.unpack("<Q", data[i:i + 8])
        event = Event.FromString(data[i + 12:i + 12 + n])
        i += 16 + n
        out += [(event.step, round(v.simple_value, 6)) for v in event.summary.value if v.tag == tag]
    return out


def test_init_from_a_training_output_in_a_bucket(gcs, tmp_path):
    """What `--init_from=gs://...` reads: the architecture (spec.resolve_run), the tokenizer (copied locally for
    sentencepiece) and the weights, restored straight into their shardings, bitwise."""
    from camel_jax.convert.llama2c import read_model, read_tokenizer, sentencepiece_model
    from camel_jax.model.llama import param_shardings
    from camel_jax.model.mesh import build_mesh
    from camel_jax.train import config as C
    from camel_jax.train.checkpointing import Checkpointer
    from camel_jax.train.setup import STORIES_DIR, _model
    from camel_jax.train.spec import resolve_run

    params, arch = read_model(os.path.join(STORIES_DIR, "stories260K.bin"))
    tok_bin = os.path.join(STORIES_DIR, "tok512.bin")
    (tmp_path / "tokenizer.model").write_bytes(sentencepiece_model(read_tokenizer(tok_bin, arch.vocab_size), tok_bin))
    out = f"gs://{gcs_util.BUCKET}/init_run"
    mesh = build_mesh("fsdp8", arch)
    shardings = param_shardings(arch, mesh)
    on_devices = jax.tree.map(jax.device_put, params, shardings)
    with Checkpointer(out) as ck:
        ck.write_model_config(arch)
        ck.save(3, {"step": jax.numpy.int32(3), "params": on_devices, "opt_state": {}, "rng": jax.random.PRNGKey(0)})
    storage.copy_dir(str(tmp_path / "tokenizer.model"), f"{out}/tokenizer")

    cfg = C.default_config()
    cfg.init_from = out
    spec = resolve_run(cfg)
    assert spec.source == "checkpoint" and spec.model.hidden_size == arch.hidden_size
    tokenizer, load, tok_dir = _model(cfg, spec, print)
    assert tok_dir == f"{out}/tokenizer" and tokenizer.vocab_size == arch.vocab_size
    from camel_jax.model.tokenizer import load_tokenizer

    ids = tokenizer.encode("Once upon a time")  # the bucket's sentencepiece model, copied locally and loaded
    assert len(ids) > 1 and ids == load_tokenizer(str(tmp_path / "tokenizer.model")).encode("Once upon a time")
    got = load(shardings)
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(params), jax.tree.leaves(got)):
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes(), jax.tree_util.keystr(path)
    emb = jax.tree.leaves(got)[0]
    assert emb.sharding.is_equivalent_to(jax.tree.leaves(shardings)[0], emb.ndim)
