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
#
# `install` packs HEAD with `git archive` (committed files only: no data, runs or .git), copies it to every worker
# (`gcloud compute tpus tpu-vm scp --worker=all`), unpacks it as ~/camel_jax-<commit> and pip installs it there with
# its `tpu` extra, i.e. the jax[tpu] pinned in pyproject.toml. `train` and `run` cd into the folder of the checkout's
# current HEAD, so a run uses exactly the code that was installed (and says so if that commit is not installed).
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

dry_run=0 allow_dirty=0 project=()
while [ $# -gt 0 ]; do
  case "$1" in
    --dry_run) dry_run=1 ;;
    --allow_dirty) allow_dirty=1 ;;
    --project=*) project=("--project=${1#--project=}") ;;
    --project) [ $# -ge 2 ] || fail "--project needs a value"; project=("--project=$2"); shift ;;
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

install_here() {  # on a worker, inside the unpacked archive: the project and its pinned `tpu` extra
  do_cmd python3 -m pip install --upgrade pip
  do_cmd python3 -m pip install "${here}[tpu]"
  do_cmd python3 -c "import jax, libtpu; print('camel_jax installed from ${here}: jax', jax.__version__, 'libtpu', libtpu.__version__)"
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

# The worker-side prefix of train/run: into the pinned commit's folder, or a clear error if it is not installed.
enter_dir() {
  printf 'cd "$HOME"/%q 2>/dev/null || { echo "%s: $(hostname): ~/%s is not installed; run: %s install %s %s" >&2; exit 2; }; ' \
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
    ssh_all "set -e; rm -rf \"\$HOME\"/$dir; tar xzf /tmp/$dir.tgz -C \"\$HOME\"; cd \"\$HOME\"/$dir; bash tpu_setup.sh local" ;;
  train|run)
    if [ "$sub" = train ]; then tpu_args " -- ARGS..." "$@"; else tpu_args " -- CMD..." "$@"; fi
    shift 2
    [ "${1:-}" = "--" ] && shift
    if [ "$sub" = run ] && [ $# -eq 0 ]; then fail "run: no command given after --"; fi
    pin_commit
    if [ "$sub" = train ]; then set -- python3 -m camel_jax.train "$@"; fi
    ssh_all "$(enter_dir)exec $(printf '%q ' "$@")" ;;
  "") usage ;;
  *) fail "unknown command '$sub'; expected install, train, run or local (see --help)" ;;
esac
