#!/usr/bin/env bash
# Fetch every raw TÜLU training dataset from its public source (the sources of open-instruct's
# scripts/prepare_train_data.sh, June 2023), then convert each with `python -m camel_jax.data prepare`.
# Needs internet; never run by tests.
#
#   scripts/download_data.sh [RAW_DIR] [OUT_DIR]
#     RAW_DIR  default data/raw;  OUT_DIR default $CAMEL_JAX_DATA_DIR or data/processed
#   env: SEED (42), DATASETS (space-separated subset), CAMEL_JAX_TOKENIZER (LLaMA tokenizer folder used to split
#        ShareGPT; default ../shared/data/llama_tokenizer), SKIP_BAD=1 to pass --skip_bad_records.
#
# Several datasets are CC BY-NC 4.0 or research-only (Alpaca, GPT-4-LLM, Code-Alpaca, ShareGPT, Baize): check each
# license before use. CoT and FLAN v2 come from AI2's Beaker as in the reference; if Beaker is unreachable, FLAN's
# raw CoT TSVs + templates.py are fetched from GitHub and rendered by our converter instead (flan_v2 has no such
# fallback: it needs the Beaker file or FLAN's full export of submix jsonl files).
set -euo pipefail
cd "$(dirname "$0")/.."
RAW=${1:-data/raw}
OUT=${2:-${CAMEL_JAX_DATA_DIR:-data/processed}}
SEED=${SEED:-42}
ALL="super_ni cot flan_v2 dolly oasst1 self_instruct unnatural_instructions stanford_alpaca code_alpaca gpt4_alpaca baize sharegpt"
DATASETS=${DATASETS:-$ALL}
HF=https://huggingface.co/datasets
GH=https://github.com
BEAKER=https://beaker.org/api/v3/datasets

fetch() {  # fetch URL DEST: skip when DEST exists; download to DEST.part then rename
  local url=$1 dest=$2
  mkdir -p "$(dirname "$dest")"
  if [ -s "$dest" ]; then echo "have $dest"; return 0; fi
  echo "fetch $url"
  curl -fL --retry 3 -o "$dest.part" "$url" && mv "$dest.part" "$dest"
}

download() {
  local d=$1 dir=$RAW/$1
  case $d in
    super_ni)
      if [ ! -d "$dir/tasks" ]; then
        fetch $GH/allenai/natural-instructions/archive/refs/heads/master.zip "$dir/master.zip"
        unzip -q "$dir/master.zip" -d "$dir" && mv "$dir"/natural-instructions-master/* "$dir"/
        rm -rf "$dir/master.zip" "$dir/natural-instructions-master"
      fi ;;
    cot)
      if ! { fetch $BEAKER/01GXZ52K2Q932H6KZY499A7FE8/files/cot_zsopt.jsonl "$dir/cot_zsopt.jsonl" &&
             fetch $BEAKER/01GXZ51ZV283RAZW7J3ECM4S58/files/cot_fsopt.jsonl "$dir/cot_fsopt.jsonl"; }; then
        echo "Beaker unreachable: rendering CoT from FLAN's raw TSVs instead"
        rm -f "$dir/cot_zsopt.jsonl" "$dir/cot_fsopt.jsonl"
        local flan=https://raw.githubusercontent.com/google-research/FLAN/main/flan/v2
        fetch $flan/templates.py "$dir/templates.py"
        for t in gsm8k strategyqa creak qasc esnli ecqa sensemaking aqua qed; do
          fetch $flan/cot_data/${t}_train.tsv "$dir/cot_data/${t}_train.tsv"
        done
      fi ;;
    flan_v2)
      fetch $BEAKER/01GZTTS2EJFPA83PXS4FQCS1SA/files/flan_v2_resampled_100k.jsonl "$dir/flan_v2_resampled_100k.jsonl" ;;
    dolly)
      fetch $HF/databricks/databricks-dolly-15k/resolve/main/databricks-dolly-15k.jsonl "$dir/databricks-dolly-15k.jsonl" ;;
    oasst1)
      fetch $HF/OpenAssistant/oasst1/resolve/main/2023-04-12_oasst_ready.trees.jsonl.gz \
        "$dir/2023-04-12_oasst_ready.trees.jsonl.gz" ;;
    self_instruct)
      fetch https://raw.githubusercontent.com/yizhongw/self-instruct/main/data/gpt3_generations/batch_221203/all_instances_82K.jsonl \
        "$dir/all_instances_82K.jsonl" ;;
    unnatural_instructions)
      if [ ! -s "$dir/core_data.jsonl" ]; then
        fetch $GH/orhonovich/unnatural-instructions/raw/main/data/core_data.zip "$dir/core_data.zip"
        unzip -q -o "$dir/core_data.zip" -d "$dir" && rm -f "$dir/core_data.zip"
      fi ;;
    stanford_alpaca)
      fetch $GH/tatsu-lab/stanford_alpaca/raw/main/alpaca_data.json "$dir/alpaca_data.json" ;;
    code_alpaca)
      fetch $GH/sahil280114/codealpaca/raw/master/data/code_alpaca_20k.json "$dir/code_alpaca_20k.json" ;;
    gpt4_alpaca)  # the reference also downloads alpaca_gpt4_data_zh.json but does not use it
      fetch $GH/Instruction-Tuning-with-GPT-4/GPT-4-LLM/raw/main/data/alpaca_gpt4_data.json "$dir/alpaca_gpt4_data.json" ;;
    baize)
      for s in alpaca medical quora stackoverflow; do
        fetch $GH/project-baize/baize-chatbot/raw/main/data/${s}_chat_data.json "$dir/${s}_chat_data.json"
      done ;;
    sharegpt)
      for p in 1 2; do
        fetch $HF/anon8231489123/ShareGPT_Vicuna_unfiltered/resolve/main/HTML_cleaned_raw_dataset/sg_90k_part${p}_html_cleaned.json \
          "$dir/sg_90k_part${p}_html_cleaned.json"
      done ;;
    *) echo "unknown dataset $d (known: $ALL)" >&2; return 2 ;;
  esac
}

mkdir -p "$RAW" "$OUT"
for d in $DATASETS; do
  echo "== $d"
  download "$d"
  extra=()
  if [ "$d" = sharegpt ] && [ -n "${CAMEL_JAX_TOKENIZER:-}" ]; then extra+=(--tokenizer "$CAMEL_JAX_TOKENIZER"); fi
  if [ "${SKIP_BAD:-0}" = 1 ]; then extra+=(--skip_bad_records); fi
  PYTHONPATH=${PYTHONPATH:-.} python -m camel_jax.data prepare --dataset "$d" --raw "$RAW/$d" \
    --out "$OUT/$d.jsonl" --seed "$SEED" --summary_json "$OUT/$d.summary.json" ${extra[@]+"${extra[@]}"}
done
echo "prepared data in $OUT (set CAMEL_JAX_DATA_DIR=$OUT for training)"
