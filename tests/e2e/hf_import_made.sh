#!/usr/bin/env bash
# hf_import_made.sh TRIAGE WORK CLASS [DTYPE]: a model transformers made and saved
# (hf_make_model.py, in DTYPE: float32 or bfloat16) imports with `triage import --format hf`, and transformers' logits on
# the tokens `triage logits` draws agree with Triage's (hf_export_check.py argues the
# tolerance).
set -euo pipefail
triage=$1
work=$2
model=$3
dtype=${4:-float32}
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=launch/env.sh
source "$here/../../launch/env.sh"
rm -rf "$work"
mkdir -p "$work"
"$TRIAGE_VENV/bin/python" -W ignore "$here/hf_make_model.py" "$work/hf" "$model" --dtype "$dtype"
"$triage" import --format hf "$work/hf" --out "$work/imported"
"$triage" logits "$work/imported/checkpoints" --sequences 4 --length 32 --out "$work/logits.safetensors"
"$TRIAGE_VENV/bin/python" -W ignore "$here/hf_export_check.py" "$work/hf" "$work/logits.safetensors"
