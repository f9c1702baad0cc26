"""The paper's recipe (LLaMA-7B on the TÜLU human+GPT mixture). Fields: camel_jax/train/config.py.

  python -m camel_jax.train --config=configs/base.py --init_from=CKPT_DIR --mesh=fsdp-1
"""
from camel_jax.train.config import base_config


def get_config():
    return base_config()
