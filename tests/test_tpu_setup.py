"""tpu_setup.sh: --dry_run's commands, parsed back, pin HEAD's commit, reach every worker and keep each argument's
quoting; the worker side of those commands, run by a real bash with a stand-in python3, gets the arguments intact
and installs the shipped archive with its `tpu` extra. No gcloud is needed (nothing is sent anywhere)."""
import json
import os
import pathlib
import shlex
import shutil
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
TRICKY = ["--config=configs/tulu.py:llama-7b,tulu_human_gpt_mix", "--config.sample.prompts=('Say \"hi\"', \"it's\")",
          "$HOME; rm -rf /", "two  spaces", "", "a\nnewline", "*"]


def _git(cwd, *args):
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture(scope="module")
def checkout(tmp_path_factory):
    """A git checkout holding tpu_setup.sh and pyproject.toml, committed (the repository's own may be dirty)."""
    d = tmp_path_factory.mktemp("checkout")
    for name in ("tpu_setup.sh", "pyproject.toml"):
        shutil.copy(REPO / name, d / name)
    _git(d, "init", "-q")
    _git(d, "add", ".")
    _git(d, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "c")
    return d, _git(d, "rev-parse", "HEAD")


def _setup(checkout_dir, *args, env=None):
    return subprocess.run(["bash", str(checkout_dir / "tpu_setup.sh"), *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=60)


def _commands(out: str) -> list[list[str]]:
    return [shlex.split(line) for line in out.splitlines() if line.strip()]


def _flag(cmd, name):
    return next(a.split("=", 1)[1] for a in cmd if a.startswith(f"--{name}="))


FAKE = """#!{python}
import json, os, shutil, sys
with open(os.environ["FAKE_LOG"], "a") as f:
    f.write(json.dumps([sys.argv[0]] + sys.argv[1:]) + "\\n")
if sys.argv[1:3] == ["-m", "venv"]:  # a venv whose python is this fake again
    os.makedirs(os.path.join(sys.argv[3], "bin"))
    shutil.copy(__file__, os.path.join(sys.argv[3], "bin", "python"))
"""


def _fake_python(tmp_path):
    """A python3.13 first on PATH (the first interpreter tpu_setup.sh tries) that records each call as
    [argv0, args...] and, asked for a venv, makes one whose python is itself."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "python3.13"
    fake.write_text(FAKE.format(python=sys.executable))
    fake.chmod(0o755)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_LOG": str(tmp_path / "calls.jsonl"),
            "HOME": str(tmp_path / "home")}


def _calls(env):
    return [json.loads(line) for line in pathlib.Path(env["FAKE_LOG"]).read_text().splitlines()]


def test_train_dry_run_pins_the_commit_and_keeps_quoting(checkout, tmp_path):
    d, commit = checkout
    r = _setup(d, "--dry_run", "--project=my proj", "train", "my-tpu", "us-central2-b", "--", *TRICKY)
    assert r.returncode == 0, r.stderr
    (cmd,) = _commands(r.stdout)
    assert cmd[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "my-tpu"]
    assert "--worker=all" in cmd and _flag(cmd, "zone") == "us-central2-b" and _flag(cmd, "project") == "my proj"
    remote = _flag(cmd, "command")
    assert f"camel_jax-{commit[:12]}" in remote
    # The worker's shell runs the command string: there python3 gets exactly the arguments given, in the folder of
    # the pinned commit.
    env = _fake_python(tmp_path)
    run_dir = pathlib.Path(env["HOME"]) / f"camel_jax-{commit[:12]}"
    (run_dir / ".venv" / "bin").mkdir(parents=True)
    shutil.copy(tmp_path / "bin" / "python3.13", run_dir / ".venv" / "bin" / "python")  # as install leaves it
    w = subprocess.run(["bash", "-c", remote], env={**os.environ, **env}, cwd=tmp_path, capture_output=True,
                       text=True, timeout=60)
    assert w.returncode == 0, w.stderr
    assert _calls(env) == [[str(run_dir / ".venv" / "bin" / "python"), "-m", "camel_jax.train", *TRICKY]]


def test_train_on_a_worker_without_that_commit_says_so(checkout, tmp_path):
    d, commit = checkout
    cmd, = _commands(_setup(d, "--dry_run", "train", "my-tpu", "z1", "--", "--mesh=fsdp-1").stdout)
    env = _fake_python(tmp_path)
    w = subprocess.run(["bash", "-c", _flag(cmd, "command")], env={**os.environ, **env}, capture_output=True,
                       text=True, timeout=60)
    assert w.returncode == 2 and f"camel_jax-{commit[:12]} is not installed" in w.stderr
    assert "tpu_setup.sh install my-tpu z1" in w.stderr and not pathlib.Path(env["FAKE_LOG"]).exists()


def test_install_ships_head_as_git_archive_to_every_worker(checkout, tmp_path):
    d, commit = checkout
    r = _setup(d, "--dry_run", "install", "my-tpu", "us-central2-b", env={"TMPDIR": str(tmp_path)})
    assert r.returncode == 0, r.stderr
    archive, scp, ssh = _commands(r.stdout)
    name = f"camel_jax-{commit[:12]}"
    assert archive[:4] == ["git", "-C", str(d), "archive"] and archive[-1] == commit
    assert f"--prefix={name}/" in archive
    assert scp[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "scp"] and "--worker=all" in scp
    assert scp[5] == str(tmp_path / f"{name}.tgz") and scp[6] == f"my-tpu:/tmp/{name}.tgz"
    assert ssh[4] == "ssh" and "--worker=all" in ssh
    # Play the worker: the archive the dry run names, unpacked and installed by the command ssh would run.
    subprocess.run(archive, check=True)
    env = _fake_python(tmp_path)
    os.makedirs(env["HOME"])
    remote = _flag(ssh, "command").replace(f"/tmp/{name}.tgz", str(tmp_path / f"{name}.tgz"))
    w = subprocess.run(["bash", "-c", remote], env={**os.environ, **env}, capture_output=True, text=True,
                       timeout=60)
    assert w.returncode == 0, w.stderr
    unpacked = pathlib.Path(env["HOME"]) / name
    assert sorted(p.name for p in unpacked.iterdir()) == [".venv", "pyproject.toml", "tpu_setup.sh"]  # + the venv
    venv_python = str(unpacked / ".venv" / "bin" / "python")
    calls = _calls(env)
    assert [str(tmp_path / "bin" / "python3.13"), "-m", "venv", str(unpacked / ".venv")] in calls
    assert [venv_python, "-m", "pip", "install", f"{unpacked}[tpu]"] in calls  # the project, its pinned jax[tpu]
    assert 'tpu = ["jax[tpu]==' in (unpacked / "pyproject.toml").read_text()


def test_uncommitted_changes_are_refused_and_bad_usage_is_one_line(checkout, tmp_path):
    d, _ = checkout
    dirty = tmp_path / "dirty"
    shutil.copytree(d, dirty)
    (dirty / "pyproject.toml").write_text("changed\n")
    r = _setup(dirty, "--dry_run", "install", "my-tpu", "z1")
    assert r.returncode == 2 and "uncommitted changes" in r.stderr and r.stdout == ""
    assert _setup(dirty, "--dry_run", "--allow_dirty", "install", "my-tpu", "z1").returncode == 0
    for args, msg in ((["train", "my-tpu"], "train: ZONE is missing"), (["run", "t", "z", "--"], "no command given"),
                      (["--bogus"], "unrecognized flag --bogus"), (["frob"], "unknown command 'frob'"),
                      (["--python=no-such-python", "local"], "no Python >= 3.11 among no-such-python")):
        r = _setup(d, "--dry_run", *args)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and msg in r.stderr, (args, r.stderr)
