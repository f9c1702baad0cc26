"""infer.compile_cache: a folder per host CPU and process layout, the user's own JAX cache left alone, "none" off,
and an unusable folder an error naming the flag; StoredJit's executables kept on disk and loaded without tracing,
keyed by shapes, static keywords and identity, a damaged entry compiled anew, donation kept."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from camel_jax.infer import compile_cache


@pytest.fixture(autouse=True)
def programs_folder_restored():
    saved = compile_cache._PROGRAMS[0]
    yield
    compile_cache._PROGRAMS[0] = saved


@pytest.fixture
def unconfigured(monkeypatch):
    """JAX's cache dir cleared for the test (conftest sets one for the whole run), restored after."""
    saved = (jax.config.jax_compilation_cache_dir, jax.config.jax_persistent_cache_min_compile_time_secs)
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    monkeypatch.delenv("CAMEL_JAX_COMPILE_CACHE", raising=False)
    jax.config.update("jax_compilation_cache_dir", None)
    yield
    jax.config.update("jax_compilation_cache_dir", saved[0])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", saved[1])


def test_the_key_names_backend_processes_and_cpu():
    key = compile_cache.host_key()
    assert key.startswith(f"{jax.default_backend()}-p{jax.process_count()}-") and len(key.split("-")[-1]) == 12
    assert key == compile_cache.host_key()


def test_a_configured_cache_is_left_as_it_is():
    before = jax.config.jax_compilation_cache_dir
    assert before  # conftest's
    assert compile_cache.enable("/nonexistent/elsewhere") == before
    assert jax.config.jax_compilation_cache_dir == before


def test_enable_makes_a_folder_per_host(unconfigured, tmp_path, monkeypatch):
    got = compile_cache.enable(str(tmp_path))
    assert got == str(tmp_path / compile_cache.host_key()) and (tmp_path / compile_cache.host_key()).is_dir()
    assert jax.config.jax_compilation_cache_dir == got
    assert jax.config.jax_persistent_cache_min_compile_time_secs == compile_cache.MIN_COMPILE_SECS


def test_the_environment_and_none(unconfigured, tmp_path, monkeypatch):
    assert compile_cache.enable("none") is None and not jax.config.jax_compilation_cache_dir
    monkeypatch.setenv("CAMEL_JAX_COMPILE_CACHE", str(tmp_path / "env"))
    assert compile_cache.enable().startswith(str(tmp_path / "env"))


def test_an_unusable_folder_names_the_flag(unconfigured, tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match=r"--compile_cache .*file: cannot create"):
        compile_cache.enable(str(tmp_path / "file"))
    assert not jax.config.jax_compilation_cache_dir


def _counted(traces: list):
    def fn(state, x, *, k):
        traces.append(x.shape)
        return {"a": state["a"] + k * x, "b": state["b"]}, jnp.sum(x)
    return fn


def test_a_second_stored_jit_loads_the_executable_without_tracing(tmp_path):
    compile_cache._store(str(tmp_path))
    traces = []
    state, x = {"a": jnp.zeros((4, 4)), "b": jnp.ones(3)}, jnp.ones((4, 4))
    first = compile_cache.StoredJit(_counted(traces), "t", "v1", static_argnames="k", donate_argnums=0)
    ref, total = first({"a": jnp.zeros((4, 4)), "b": jnp.ones(3)}, x, k=2)
    assert len(traces) == 1 and first.stored == 1 and len(os.listdir(tmp_path / "camel_jax_programs")) == 1
    again = compile_cache.StoredJit(_counted(traces), "t", "v1", static_argnames="k", donate_argnums=0)
    got, total2 = again(state, x, k=2)
    assert len(traces) == 1 and again.loaded == 1  # from disk: not traced
    np.testing.assert_array_equal(np.asarray(got["a"]), np.asarray(ref["a"]))
    assert float(total2) == float(total) == 16.0 and state["a"].is_deleted()  # donation kept
    again({"a": jnp.zeros((4, 4)), "b": jnp.ones(3)}, x, k=2)
    assert again._cache_size() == 1 and again.loaded == 1  # the in-memory copy serves the next calls


def test_the_key_separates_shapes_static_keywords_and_identity(tmp_path):
    compile_cache._store(str(tmp_path))
    traces = []
    state = {"a": jnp.zeros((4, 4)), "b": jnp.ones(3)}
    f = compile_cache.StoredJit(_counted(traces), "t", "v1", static_argnames="k")
    f(state, jnp.ones((4, 4)), k=2)
    got, _ = f(state, jnp.ones((4, 4)), k=3)
    assert float(got["a"][0, 0]) == 3.0
    f({"a": jnp.zeros((2, 4)), "b": jnp.ones(3)}, jnp.ones((2, 4)), k=2)
    f(state, jnp.ones((4, 4), jnp.int32), k=2)
    other = compile_cache.StoredJit(_counted(traces), "t", "v2", static_argnames="k")
    other(state, jnp.ones((4, 4)), k=2)
    assert len(traces) == 5 and other.loaded == 0 and len(os.listdir(tmp_path / "camel_jax_programs")) == 5


def test_a_damaged_entry_is_compiled_anew_and_replaced(tmp_path):
    compile_cache._store(str(tmp_path))
    traces = []
    state, x = {"a": jnp.zeros((4, 4)), "b": jnp.ones(3)}, jnp.ones((4, 4))
    compile_cache.StoredJit(_counted(traces), "t", static_argnames="k")(state, x, k=1)
    (entry,) = (tmp_path / "camel_jax_programs").iterdir()
    entry.write_bytes(b"not an executable")
    f = compile_cache.StoredJit(_counted(traces), "t", static_argnames="k")
    got, _ = f(state, x, k=1)
    assert float(got["a"][0, 0]) == 1.0 and f.loaded == 0 and f.stored == 1 and len(traces) == 2
    g = compile_cache.StoredJit(_counted(traces), "t", static_argnames="k")
    g(state, x, k=1)
    assert g.loaded == 1 and len(traces) == 2


def test_without_a_folder_nothing_is_written(tmp_path):
    compile_cache._store(None)
    traces = []
    f = compile_cache.StoredJit(_counted(traces), "t", static_argnames="k")
    f({"a": jnp.zeros((4, 4)), "b": jnp.ones(3)}, jnp.ones((4, 4)), k=1)
    assert f.stored == 0 and len(traces) == 1


def test_enable_and_none_set_the_programs_folder(unconfigured, tmp_path):
    compile_cache._store(str(tmp_path))
    compile_cache.enable("none")
    assert compile_cache._PROGRAMS[0] is None
    folder = compile_cache.enable(str(tmp_path))
    assert compile_cache._PROGRAMS[0] == os.path.join(folder, "camel_jax_programs")


def test_the_fingerprint_covers_the_package_source():
    assert compile_cache.fingerprint() == compile_cache.fingerprint() and len(compile_cache.fingerprint()) == 64


def test_an_executable_jax_had_cached_is_stored_from_a_fresh_compile(tmp_path):
    """JAX's own cache (conftest's) already holds the program: the store compiles it afresh anyway, since a
    serialized copy of a cache-loaded XLA:CPU executable fails when run ("Function ..._fusion not found")."""
    assert jax.config.jax_compilation_cache_dir  # conftest's, with every compile kept
    x = jnp.arange(1000.0)

    def f(x):
        return jnp.sum(-(x ** 3) * jnp.exp(-x)) + jnp.tanh(x).sum()

    want = float(jax.jit(f)(x))  # into JAX's cache
    compile_cache._store(str(tmp_path))
    compile_cache.StoredJit(f, "cached")(x)
    again = compile_cache.StoredJit(f, "cached")
    assert float(again(x)) == want and again.loaded == 1
    assert jax.config.jax_enable_compilation_cache
