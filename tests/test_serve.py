"""python -m camel_jax.serve: binds 127.0.0.1:8000 unless told otherwise, names the model after the checkpoint
folder, serves /v1/models and /health from the app it builds; a user's mistake is one stderr line and exit 2."""
import pytest
from starlette.testclient import TestClient

from camel_jax import serve


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    from stories_util import stories

    return stories(tmp_path_factory)[0]


def test_defaults_and_the_app(ckpt, monkeypatch):
    import uvicorn

    ran = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: ran.update(app=app, **kw))
    assert serve.main(["--checkpoint", ckpt, "--slots", "2", "--max_len", "128"]) == 0
    assert (ran["host"], ran["port"]) == ("127.0.0.1", 8000)
    with TestClient(ran["app"]) as client:  # runs the app's lifespan: the driver thread starts and stops
        assert client.get("/v1/models").json()["data"][0] == {"id": "ckpt", "object": "model", "created": 0,
                                                              "owned_by": "camel_jax", "max_model_len": 128}
        assert client.get("/health").json()["slots"] == 2
        assert client.get("/nowhere").json()["error"]["type"] == "not_found_error"


@pytest.mark.parametrize("argv, message", [
    (["--checkpoint", "/nonexistent/ckpt"], "is not a camel_jax checkpoint"),
    (["--checkpoint", "x", "--port", "70000"], "--port 70000: not a port number"),
    (["--checkpoint", "x", "--slots", "0"], "--slots must be >= 1"),
    (["--checkpoint", "x", "--bind", "0.0.0.0"], "unrecognized flag --bind"),
])
def test_usage_errors(argv, message, capsys):
    try:
        code = serve.main(argv)
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.startswith("python -m camel_jax.serve: error: ")
    assert len(err.strip().splitlines()) == 1
