#!/usr/bin/env bash
# Set up camel_jax on every worker of a Cloud TPU VM slice, and launch one training run on all of them.
#
#   ./tpu_setup.sh [OPTIONS] install TPU_NAME ZONE              # ship this checkout's HEAD, install it on every worker
#   ./tpu_setup.sh [OPTIONS] train   TPU_NAME ZONE -- ARGS...   # python3 -m camel_jax.train ARGS on every worker
#   ./tpu_setup.sh [OPTIONS] run     TPU_NAME ZONE -- CMD...    # any command on every worker
#   ./tpu_setup.sh local                                       # on one TPU VM, in an unpacked copy: install here
#
# OPTIONS: --dry_run      print every command (shell-quoted, one per line) instead of running it
#          --project=P    passed to gcloud as --project=P
#          --allow_dirty  ship HEAD although tracked files have uncommitted changes (those are NOT shipped)
#          --python=PY    the workers' Python (>= 3.11; default: the first of python3.13, 3.12, 3.11, python3 that is)
#
# `install` packs HEAD with `git archive` (committed files only: no data, runs or .git), copies it to every worker
# (`gcloud compute tpus tpu-vm scp --worker=all`), unpacks it as ~/camel_jax-<commit> and pip installs it into that
# folder's own virtualenv (.venv) with its `tpu` extra, i.e. the jax[tpu] pinned in pyproject.toml. `train` and `run`
# run in the folder of the checkout's current HEAD with that venv first on PATH, so a run uses exactly the code that
# was installed (and says so if that commit is not installed).
# Arguments keep their quoting: each is quoted once for the worker's shell (printf %q), never re-split.
# TPU VMs start jax.distributed themselves (camel_jax.train joins the slice), so the same command runs on every host.
#
# Example (v4-64 = 32 chips on 8 hosts; gs:// paths, since a multi-host run cannot checkpoint to each host's disk):
#   ./tpu_setup.sh install my-tpu us-central2-b
#   ./tpu_setup.sh run my-tpu us-central2-b -- gcloud storage cp -r gs://my-bucket/tulu_data ..
#   ./tpu_setup.sh train my-tpu us-central2-b -- --config=configs/tulu.py:llama-7b,tulu_human_gpt_mix \
#       --mesh=fsdp-1 --config.data.data_dir=../tulu_data \
#       --init_from=gs://my-bucket/ckpt/llama-7b --output_dir=gs://my-bucket/runs/tulu-7b
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
prog="tpu_setup.sh"

fail() { echo "$prog: error: $*" >&2; exit 2; }
usage() { sed -n '2,12p' "${BASH_SOURCE[0]}" >&2; exit 2; }

dry_run=0 allow_dirty=0 project=() python=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dry_run) dry_run=1 ;;
    --allow_dirty) allow_dirty=1 ;;
    --project=*) project=("--project=${1#--project=}") ;;
    --project) [ $# -ge 2 ] || fail "--project needs a value"; project=("--project=$2"); shift ;;
    --python=*) python=${1#--python=} ;;
    --help|-h) usage ;;
    --*) fail "unrecognized flag $1 (see --help)" ;;
    *) break ;;
  esac
  shift
done

# Run a command, or with --dry_run print it, each word quoted as the shell reads it back.
do_cmd() {
  if [ "$dry_run" = 1 ]; then printf '%q ' "$@"; echo; else "$@"; fi
}

pick_python() {  # the first interpreter >= 3.11 (TPU VM images have shipped 3.10 as python3)
  local py
  for py in ${python:-python3.13 python3.12 python3.11 python3}; do
    if command -v "$py" >/dev/null 2>&1 && "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$py"; return
    fi
  done
  fail "$(hostname): no Python >= 3.11 among ${python:-python3.13 python3.12 python3.11 python3} (camel_jax needs" \
       "3.11+); e.g. sudo apt-get install -y python3.11 python3.11-venv, or pass --python=PY"
}

install_here() {  # on a worker, inside the unpacked archive: a venv with the project and its pinned `tpu` extra
  local py
  py=$(pick_python)
  do_cmd "$py" -m venv "$here/.venv"
  do_cmd "$here/.venv/bin/python" -m pip install --upgrade pip
  do_cmd "$here/.venv/bin/python" -m pip install "${here}[tpu]"
  do_cmd "$here/.venv/bin/python" -c "import jax, libtpu; print('camel_jax installed in ${here}/.venv: jax', jax.__version__, 'libtpu', libtpu.__version__)"
}

# The commit everything is pinned to: this checkout's HEAD (refusing uncommitted changes unless --allow_dirty).
pin_commit() {
  git -C "$here" rev-parse --git-dir >/dev/null 2>&1 || fail "$here is not a git checkout; install needs git archive of HEAD"
  commit=$(git -C "$here" rev-parse HEAD)
  short=${commit:0:12}
  dir="camel_jax-$short"
  if [ "$allow_dirty" = 0 ] && [ -n "$(git -C "$here" status --porcelain --untracked-files=no)" ]; then
    fail "tracked files have uncommitted changes, which would not be shipped; commit them or pass --allow_dirty"
  fi
}

tpu_args() {  # usage-tail name zone ... -> sets name, zone
  local tail=$1; name=${2:-}; zone=${3:-}
  [ -n "$name" ] || fail "$sub: TPU_NAME is missing (usage: $prog $sub TPU_NAME ZONE$tail)"
  [ -n "$zone" ] || fail "$sub: ZONE is missing (usage: $prog $sub TPU_NAME ZONE$tail)"
}

ssh_all() {  # remote-command
  do_cmd gcloud compute tpus tpu-vm ssh "$name" "--zone=$zone" --worker=all "${project[@]}" "--command=$1"
}

# The worker-side prefix of train/run: into the pinned commit's folder with its venv first on PATH, or a clear
# error if that commit is not installed there.
enter_dir() {
  printf 'cd "$HOME"/%q 2>/dev/null && [ -x .venv/bin/python ] || { echo "%s: $(hostname): ~/%s is not installed; run: %s install %s %s" >&2; exit 2; }; export PATH="$PWD/.venv/bin:$PATH"; ' \
    "$dir" "$prog" "$dir" "$prog" "$name" "$zone"
}

sub=${1:-}
[ $# -gt 0 ] && shift
case "$sub" in
  local)
    [ $# -eq 0 ] || fail "local takes no arguments (got: $*)"
    install_here ;;
  install)
    tpu_args "" "$@"
    [ $# -eq 2 ] || fail "install takes TPU_NAME ZONE only (got: $*)"
    pin_commit
    tgz="${TMPDIR:-/tmp}/$dir.tgz"
    do_cmd git -C "$here" archive --format=tar.gz "--prefix=$dir/" -o "$tgz" "$commit"
    do_cmd gcloud compute tpus tpu-vm scp "$tgz" "$name:/tmp/$dir.tgz" "--zone=$zone" --worker=all "${project[@]}"
    local_flags=""
    if [ -n "$python" ]; then local_flags="$(printf '%q' "--python=$python") "; fi
    ssh_all "set -e; rm -rf \"\$HOME\"/$dir; tar xzf /tmp/$dir.tgz -C \"\$HOME\"; cd \"\$HOME\"/$dir; bash tpu_setup.sh ${local_flags}local" ;;
  train|run)
    if [ "$sub" = train ]; then tpu_args " -- ARGS..." "$@"; else tpu_args " -- CMD..." "$@"; fi
    shift 2
    [ "${1:-}" = "--" ] && shift
    if [ "$sub" = run ] && [ $# -eq 0 ]; then fail "run: no command given after --"; fi
    pin_commit
    if [ "$sub" = train ]; then set -- python -m camel_jax.train "$@"; fi
    ssh_all "$(enter_dir)exec $(printf '%q ' "$@")" ;;
  "") usage ;;
  *) fail "unknown command '$sub'; expected install, train, run or local (see --help)" ;;
esac
