#!/usr/bin/env bash
# hf_export.sh TRIAGE WORK RANKS CONFIG [train options...]: trains CONFIG for two steps on
# RANKS ranks (EP = RANKS), exports the checkpoint with `triage export --format hf`, and has
# transformers load the export and compare its logits with `triage logits` of the same
# checkpoint (tests/e2e/hf_export_check.py). Extra export flags: HF_EXPORT_FLAGS. An export
# rounded to bf16 (--dtype bf16) is compared with the logits of its own weights: imported
# back (widening is exact), which is the model transformers loads in float32. An export
# that carries a tokenizer then runs through AutoTokenizer and generate() (launch/generate).
set -euo pipefail
triage=$1
work=$2
ranks=$3
config=$4
shift 4
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=launch/env.sh
source "$here/../../launch/env.sh"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1

rm -rf "$work"
mkdir -p "$work"
# Small enough for a test: the preset's shape choices (routing, experts, blocks) at a
# width of 32, two layers, sequences of 32 tokens.
mpirun -n "$ranks" --oversubscribe --bind-to none "$triage" train "$config" --out "$work/run" \
  --set model.d_model=32 --set model.n_heads=4 --set model.d_ff=64 --set model.n_layers=2 \
  --set model.max_seq_len=32 --set data.seq_len=32 --set moe.d_expert=16 \
  --set train.batch_size=8 --set train.steps=2 --set train.warmup_steps=1 \
  --set train.eval_every=0 --set train.checkpoint_every=2 --set train.log_every=1 \
  --set parallel.expert="$ranks" "$@" >"$work/train.log" 2>&1 || { tail -n 20 "$work/train.log"; exit 1; }
# shellcheck disable=SC2086  # HF_EXPORT_FLAGS is a list of flags
"$triage" export "$work/run/checkpoints" --format hf --out "$work/hf" ${HF_EXPORT_FLAGS:-}
"$triage" logits "$work/run/checkpoints" --sequences 4 --length 32 --out "$work/triage_logits.safetensors"
if [[ " ${HF_EXPORT_FLAGS:-} " == *" --dtype bf16 "* ]]; then
  grep -q '"dtype": "bfloat16"' "$work/hf/config.json" || { echo "FAIL: config.json does not say bfloat16"; exit 1; }
  "$triage" import --format hf "$work/hf" --out "$work/rounded" | grep "note: bf16"
  "$triage" logits "$work/rounded/checkpoints" --sequences 4 --length 32 --out "$work/triage_logits.safetensors"
fi
"$TRIAGE_VENV/bin/python" -W ignore "$here/hf_export_check.py" "$work/hf" "$work/triage_logits.safetensors"
if [[ -f $work/hf/tokenizer.json ]]; then
  "$here/../../launch/generate" "$work/hf"
fi
