#!/usr/bin/env python3
"""hf_fuse_experts.py SOURCE_DIR OUT_DIR: copies a Hub-layout MoE export (one tensor per
expert and matrix) into transformers' fused layout (experts.gate_up_proj [E, 2H, D] and
experts.down_proj [E, D, H] per layer), so that `triage import` is tested on both layouts."""
import json
import re
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

PER_EXPERT = re.compile(r"(.*\.(?:block_sparse_moe|mlp)\.)experts\.(\d+)\.(\w+)\.weight")
GATE, UP, DOWN = {"w1", "gate_proj"}, {"w3", "up_proj"}, {"w2", "down_proj"}


def main(source: str, out: str) -> None:
    tensors = load_file(str(Path(source) / "model.safetensors"))
    fused, experts = {}, {}
    for name, tensor in tensors.items():
        match = PER_EXPERT.fullmatch(name)
        if match is None:
            fused[name] = tensor
            continue
        block, expert, matrix = match.group(1), int(match.group(2)), match.group(3)
        kind = "gate" if matrix in GATE else "up" if matrix in UP else "down"
        experts.setdefault(block, {}).setdefault(kind, {})[expert] = tensor
    for block, kinds in experts.items():
        count = len(kinds["gate"])
        fused[block + "experts.gate_up_proj"] = torch.stack(
            [torch.cat([kinds["gate"][e], kinds["up"][e]]) for e in range(count)])
        fused[block + "experts.down_proj"] = torch.stack([kinds["down"][e] for e in range(count)])
    Path(out).mkdir(parents=True, exist_ok=True)
    save_file(fused, str(Path(out) / "model.safetensors"), metadata={"format": "pt"})
    shutil.copy(Path(source) / "config.json", Path(out) / "config.json")
    print(f"fused {sum(len(k['gate']) for k in experts.values())} experts in {len(experts)} layers")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
