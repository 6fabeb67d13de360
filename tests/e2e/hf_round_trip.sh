#!/usr/bin/env bash
# hf_round_trip.sh TRIAGE WORK RANKS CONFIG [train options...]: after hf_export.sh (train,
# export, transformers agrees), imports the export with `triage import --format hf`, and
# checks the round trip is exact: exporting the imported checkpoint gives the same tensor
# bytes, and the imported checkpoint's logits are bitwise Triage's original ones; the
# tokenizer comes along, and the imported config.yaml names the data kind it reads, with no
# data.path (training refuses to start without one). Then trains two more steps from the
# imported run folder on RANKS ranks, on synthetic data (the amino-acid vocabulary). A copy with
# transformers' fused expert tensors (hf_fuse_experts.py) must import to the same logits.
set -euo pipefail
triage=$1
work=$2
ranks=$3
here=$(cd "$(dirname "$0")" && pwd)
bash "$here/hf_export.sh" "$@"
"$triage" import --format hf "$work/hf" --out "$work/imported"
cmp "$work/hf/tokenizer.json" "$work/imported/tokenizer.json"
grep -q '^  kind: proteins$' "$work/imported/config.yaml"
grep -q '^  path: ""$' "$work/imported/config.yaml"
# shellcheck disable=SC2086  # HF_EXPORT_FLAGS is a list of flags
"$triage" export "$work/imported/checkpoints" --format hf --out "$work/hf_again" ${HF_EXPORT_FLAGS:-}
for file in "$work"/hf/model*.safetensors; do
  cmp "$file" "$work/hf_again/$(basename "$file")"
done
"$triage" logits "$work/imported/checkpoints" --sequences 4 --length 32 --out "$work/imported_logits.safetensors"
cmp "$work/triage_logits.safetensors" "$work/imported_logits.safetensors"
# transformers' fused expert tensors import to the same model.
# shellcheck source=launch/env.sh
source "$here/../../launch/env.sh"
"$TRIAGE_VENV/bin/python" "$here/hf_fuse_experts.py" "$work/hf" "$work/hf_fused"
"$triage" import --format hf "$work/hf_fused" --out "$work/imported_fused" >/dev/null
"$triage" logits "$work/imported_fused/checkpoints" --sequences 4 --length 32 --out "$work/fused_logits.safetensors"
cmp "$work/triage_logits.safetensors" "$work/fused_logits.safetensors"
echo "round trip exact: export -> import -> export gives the same tensors, and the same logits bitwise (also from fused experts)"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
mpirun -n "$ranks" --oversubscribe --bind-to none "$triage" train "$work/imported/config.yaml" \
  --out "$work/imported" --resume --set data.kind=synthetic --set train.steps=2 --set train.warmup_steps=1 --set train.batch_size=8 --set data.seq_len=32 \
  --set train.eval_every=0 --set parallel.expert="$ranks" | tail -n 3
