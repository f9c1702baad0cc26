#!/usr/bin/env bash
# Set up camel_jax on every worker of a Cloud TPU VM slice, or run a command on all of them.
#
#   ./tpu_setup.sh install   TPU_NAME ZONE            # clone-free: copies this checkout and pip installs ".[tpu]"
#   ./tpu_setup.sh run       TPU_NAME ZONE -- CMD...  # runs CMD on all workers (jax.distributed starts itself on TPU)
#   ./tpu_setup.sh local                              # on a single TPU VM: install here
#
# Example (v4-64, 8 hosts): ./tpu_setup.sh run my-tpu us-central2-b -- \
#     python -m camel_jax.train --mesh=fsdp-1,mp4 --config=configs/tulu.py:llama-7b,tulu_human_gpt_mix \
#     --output_dir=gs://bucket/runs/tulu-7b --init_from=gs://bucket/ckpt/llama-7b
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

install_here() {
  python3 -m pip install --upgrade pip
  python3 -m pip install -e "${here}[tpu]"
  python3 -c "import jax; print('jax', jax.__version__, 'devices:', jax.device_count(), 'local:', jax.local_device_count())"
}

case "${1:-}" in
  local)
    install_here ;;
  install)
    name=${2:?TPU name}; zone=${3:?zone}
    tar czf /tmp/camel_jax_src.tgz -C "$here" --exclude=.git --exclude=outputs .
    gcloud compute tpus tpu-vm scp /tmp/camel_jax_src.tgz "$name":/tmp/ --zone "$zone" --worker=all
    gcloud compute tpus tpu-vm ssh "$name" --zone "$zone" --worker=all --command \
      "mkdir -p ~/camel_jax && tar xzf /tmp/camel_jax_src.tgz -C ~/camel_jax && cd ~/camel_jax && bash tpu_setup.sh local" ;;
  run)
    name=${2:?TPU name}; zone=${3:?zone}; shift 3
    [ "${1:-}" = "--" ] && shift
    gcloud compute tpus tpu-vm ssh "$name" --zone "$zone" --worker=all --command "cd ~/camel_jax && $*" ;;
  *)
    sed -n '2,12p' "$0"; exit 2 ;;
esac
