#!/usr/bin/env bash
# hf_made_trains.sh TRIAGE WORK CLASS DTYPE CORPUS: a model transformers made and saved in
# DTYPE (hf_make_model.py, vocabulary 512) with the tokenizer that made CORPUS (a token
# file of ./launch/tokenize) beside it, as a downloaded model comes; `triage import` keeps
# the tokenizer and agrees with transformers' logits; 20 steps at EP 4 on CORPUS; `triage
# export`; transformers loads the export and agrees again, and AutoTokenizer + generate()
# run on text.
set -euo pipefail
triage=$1 work=$2 model=$3 dtype=$4 corpus=$5
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=launch/env.sh
source "$here/../../launch/env.sh"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
python=("$TRIAGE_VENV/bin/python" -W ignore)
rm -rf "$work"
mkdir -p "$work"
"${python[@]}" "$here/hf_make_model.py" "$work/hf" "$model" --dtype "$dtype" --vocab 512
cp "$corpus.tokenizer.json" "$work/hf/tokenizer.json"
"$triage" import --format hf "$work/hf" --out "$work/run"
"$triage" logits "$work/run/checkpoints" --sequences 4 --length 32 --out "$work/imported_logits.safetensors" >/dev/null
echo "imported:"
"${python[@]}" "$here/hf_export_check.py" "$work/hf" "$work/imported_logits.safetensors"
mpirun -n 4 --oversubscribe --bind-to none "$triage" train "$work/run/config.yaml" --out "$work/run" \
  --resume --set data.path="$corpus" --set data.seq_len=32 --set train.batch_size=8 \
  --set train.steps=20 --set train.warmup_steps=2 --set train.lr=1e-3 --set train.eval_every=0 \
  --set train.checkpoint_every=20 --set parallel.expert=4 >"$work/train.log" 2>&1 \
  || { tail -n 20 "$work/train.log"; exit 1; }
grep -E "^  train loss" "$work/train.log"
"$triage" export "$work/run/checkpoints" --format hf --out "$work/export"
"$triage" logits "$work/run/checkpoints" --sequences 4 --length 32 --out "$work/trained_logits.safetensors" >/dev/null
echo "trained 20 steps at EP 4 and exported:"
"${python[@]}" "$here/hf_export_check.py" "$work/export" "$work/trained_logits.safetensors"
"$here/../../launch/generate" "$work/export"
