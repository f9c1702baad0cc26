#!/usr/bin/env bash
# Fetch the full evaluation files into the layout `python -m camel_jax.evaluate --data_dir DIR` reads (the layout
# of ../shared/data): mmlu/, gsm8k/, bbh/, tydiqa/, humaneval/, alpaca_eval/. Sources are the ones the paper's
# scripts/prepare_eval_data.sh used (open_instruct.md §4.8), plus the files its code held inline (GSM exemplars,
# TydiQA templates) and AlpacaEval's (the AlpacaFarm judge templates and davinci-003 reference outputs).
#
#   scripts/download_eval_data.sh DIR        then: export CAMEL_JAX_EVAL_DATA=DIR (or pass --data_dir DIR)
#
# Needs curl, tar, unzip and python3. Existing files are kept (delete one to fetch it again). Not run in tests.
set -euo pipefail

DIR=${1:?usage: $0 DIR}
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
OPEN_INSTRUCT=https://raw.githubusercontent.com/allenai/open-instruct/13404e37ac553fc1e072f3ac1ec12d7a5a719d13
ALPACA_EVAL=https://raw.githubusercontent.com/tatsu-lab/alpaca_eval/main

fetch() {  # fetch URL FILE: download unless FILE exists
  if [ -s "$2" ]; then echo "have $2"; return; fi
  mkdir -p "$(dirname "$2")"
  echo "get  $1"
  curl -fsSL --retry 3 -o "$2.part" "$1" && mv "$2.part" "$2"
}

# MMLU (Hendrycks et al.): data/{dev,val,test}/<subject>_<split>.csv
if [ ! -d "$DIR/mmlu/test" ]; then
  fetch https://people.eecs.berkeley.edu/~hendrycks/data.tar "$TMP/mmlu.tar"
  tar -xf "$TMP/mmlu.tar" -C "$TMP"
  mkdir -p "$DIR/mmlu" && cp -r "$TMP/data/dev" "$TMP/data/val" "$TMP/data/test" "$DIR/mmlu/"
fi

# GSM8K test/train, and the paper's 8 CoT exemplars (eval/gsm/examplars.py at 13404e37a) as JSON
fetch https://raw.githubusercontent.com/openai/grade-school-math/master/grade_school_math/data/test.jsonl \
  "$DIR/gsm8k/test.jsonl"
fetch https://raw.githubusercontent.com/openai/grade-school-math/master/grade_school_math/data/train.jsonl \
  "$DIR/gsm8k/train.jsonl"
if [ ! -s "$DIR/gsm8k/cot_exemplars.json" ]; then
  fetch "$OPEN_INSTRUCT/eval/gsm/examplars.py" "$TMP/examplars.py"
  python3 - "$TMP/examplars.py" "$DIR/gsm8k/cot_exemplars.json" <<'EOF'
import ast, json, sys
tree = ast.parse(open(sys.argv[1]).read())
value = next(n.value for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == "EXAMPLARS")
json.dump(ast.literal_eval(value), open(sys.argv[2], "w"), indent=2)
EOF
fi

# BIG-Bench Hard: bbh/{bbh/<task>.json, cot-prompts/<task>.txt}
if [ ! -d "$DIR/bbh/bbh" ]; then
  fetch https://github.com/suzgunmirac/BIG-Bench-Hard/archive/refs/heads/main.zip "$TMP/bbh.zip"
  unzip -q "$TMP/bbh.zip" -d "$TMP"
  mkdir -p "$DIR/bbh" && cp -r "$TMP/BIG-Bench-Hard-main/bbh" "$TMP/BIG-Bench-Hard-main/cot-prompts" "$DIR/bbh/"
fi

# TyDi QA GoldP v1.1 (SQuAD format, all languages in one file), and the paper's per-language templates
fetch https://storage.googleapis.com/tydiqa/v1.1/tydiqa-goldp-v1.1-dev.json "$DIR/tydiqa/tydiqa-goldp-v1.1-dev.json"
fetch https://storage.googleapis.com/tydiqa/v1.1/tydiqa-goldp-v1.1-train.json \
  "$DIR/tydiqa/tydiqa-goldp-v1.1-train.json"
if [ ! -s "$DIR/tydiqa/prompt_templates.json" ]; then  # the two template dicts of eval/tydiqa/run_eval.py
  fetch "$OPEN_INSTRUCT/eval/tydiqa/run_eval.py" "$TMP/tydiqa_run_eval.py"
  python3 - "$TMP/tydiqa_run_eval.py" "$DIR/tydiqa/prompt_templates.json" <<'EOF'
import ast, json, sys
tree = ast.parse(open(sys.argv[1]).read())
d = {n.targets[0].id: ast.literal_eval(n.value) for n in tree.body
     if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "").startswith("encoding_templates_with")}
out = {"with_context": {k: dict(zip(("instruction", "passage", "question", "answer"), v))
                        for k, v in d["encoding_templates_with_context"].items()},
       "without_context": {k: dict(zip(("instruction", "question", "answer"), v))
                           for k, v in d["encoding_templates_without_context"].items()}}
json.dump(out, open(sys.argv[2], "w", encoding="utf-8"), indent=2, ensure_ascii=False)
EOF
fi

# HumanEval (164 problems) and human-eval's example files
for f in HumanEval.jsonl.gz example_problem.jsonl example_samples.jsonl; do
  fetch "https://raw.githubusercontent.com/openai/human-eval/master/data/$f" "$DIR/humaneval/$f"
done

# AlpacaEval / AlpacaFarm: the 805 instructions, text-davinci-003's outputs, the GPT-4 judge templates
fetch https://huggingface.co/datasets/tatsu-lab/alpaca_eval/resolve/main/alpaca_eval.json \
  "$DIR/alpaca_eval/alpaca_eval.json"
fetch "$ALPACA_EVAL/results/text_davinci_003/model_outputs.json" "$DIR/alpaca_eval/text_davinci_003_model_outputs.json"
for f in alpaca_eval_gpt4/alpaca_eval.txt alpaca_eval_gpt4/configs.yaml \
         alpaca_farm_greedy_gpt4/chatml_b5_without_inputs.txt alpaca_farm_greedy_gpt4/configs.yaml; do
  fetch "$ALPACA_EVAL/src/alpaca_eval/evaluators_configs/$f" "$DIR/alpaca_eval/evaluators_configs/$f"
done

echo "eval data in $DIR (export CAMEL_JAX_EVAL_DATA=$DIR)"
