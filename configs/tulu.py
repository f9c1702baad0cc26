"""All of the paper's runs: `--config=configs/tulu.py:<size>,<data>`.

<size>: llama-7b | llama-13b | llama-30b | llama-65b; <data>: one of the 12 datasets (super_ni, cot, flan_v2, dolly,
oasst1, self_instruct, unnatural_instructions, stanford_alpaca, code_alpaca, gpt4_alpaca, baize, sharegpt) or a
mixture (tulu_human_mix, tulu_human_gpt_mix). Example:

  python -m camel_jax.train --config=configs/tulu.py:llama-13b,tulu_human_gpt_mix --init_from=CKPT --mesh=fsdp-1
"""
from camel_jax.train.config import DATASETS, MIXTURES, SIZES, ConfigError, paper_config

VARIANTS = tuple(f"{s},{d}" for s in SIZES for d in DATASETS + MIXTURES)


def get_config(variant: str = "llama-7b,tulu_human_gpt_mix"):
    parts = variant.split(",")
    if len(parts) != 2:
        raise ConfigError(f"configs/tulu.py:{variant}: expected '<size>,<data>', e.g. llama-7b,tulu_human_gpt_mix")
    return paper_config(parts[0].strip(), parts[1].strip())
