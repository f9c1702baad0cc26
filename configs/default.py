"""The embedded default (what `python -m camel_jax.train` with no --config runs): the real pretrained stories260K
fine-tuned on the bundled TÜLU-mix sample, on all local devices, in minutes on a CPU."""
from camel_jax.train.config import default_config


def get_config():
    return default_config()
