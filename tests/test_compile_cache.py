"""infer.compile_cache: a folder per host CPU and process layout, the user's own JAX cache left alone, "none" off,
and an unusable folder an error naming the flag."""
import jax
import pytest

from camel_jax.infer import compile_cache


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
