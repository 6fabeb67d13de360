#!/usr/bin/env bash
# readme_path.sh BUILD WORK: the README's path from text to a transformers model, as written
# there, at small size (fewer steps): tokenize a corpus (a BPE trained offline on Debian's
# licence texts), pre-train the small Qwen3-MoE on 4 ranks, export it, load it with
# transformers and generate text; then import it, tokenize another text with its tokenizer,
# fine-tune with expert parallelism, and export again. Keep in step with README.md.
set -euo pipefail
build=$1 work=$2
root=$(cd "$(dirname "$0")/../.." && pwd)
export TRIAGE_NO_BUILD=1 TRIAGE_BUILD=$build OMP_NUM_THREADS=1
rm -rf "$work"
mkdir -p "$work"
cd "$work"
triage=$build/bin/triage
licences=/usr/share/common-licenses

"$root/launch/tokenize" --train-bpe 2048 --out runs/corpus/licences.tokens $licences/*
"$root/launch/run" -n 4 "$root/configs/qwen3-moe-small.yaml" --set train.steps=40 | tail -n 4
"$triage" export runs/qwen3-moe-small/checkpoints --format hf --out runs/qwen3-moe-small-hf
"$root/launch/generate" runs/qwen3-moe-small-hf "This program is free software"

"$triage" import --format hf runs/qwen3-moe-small-hf --out runs/finetune
"$root/launch/tokenize" --tokenizer runs/finetune/tokenizer.json --out runs/corpus/gpl2.tokens $licences/GPL-2
"$root/launch/run" -n 4 runs/finetune/config.yaml --out runs/finetune --resume \
  --set data.path=runs/corpus/gpl2.tokens --set train.steps=10 --set train.warmup_steps=2 --set parallel.expert=4 | tail -n 4
"$triage" export runs/finetune/checkpoints --format hf --out runs/finetune-hf
"$root/launch/generate" runs/finetune-hf "This program is free software"
echo "README path: tokenized, pre-trained, exported, generated, imported, fine-tuned, exported"
