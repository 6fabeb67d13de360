#!/usr/bin/env python3
"""hf_export_check.py EXPORT_DIR TRIAGE_LOGITS: loads a `triage export --format hf` folder
with transformers' AutoModelForCausalLM, the way any user would, and compares its logits on
the tokens in TRIAGE_LOGITS (written by `triage logits`) with Triage's own.

Fails when transformers reports any missing, unexpected or mismatched weight (an export that
loads but silently leaves weights at their initialisation), or when the logits differ by
more than the tolerance, relative to the largest logit:
- float32: 1e-4. Both sides compute the same operations in float32 in different orders
  (fused vs per-expert GEMMs, attention kernels); rounding is ~1e-7 per operation and grows
  roughly with the square root of the terms summed (width 32, a few hundred terms per logit)
  and the depth, so honest agreement is ~1e-6 and 1e-4 leaves a 100x margin, while a wrong,
  transposed or missing weight moves the logits by their own size (~1).
- float64: 1e-5. transformers' Mixtral and Qwen2-MoE compute RMSNorm and the router softmax
  in float32 even in a float64 model, so agreement is bounded by float32 rounding in those
  steps (~1e-7) rather than float64's ~1e-15. Their default experts kernel (grouped_mm) has
  no float64, so float64 runs the classes' per-expert loop (experts_implementation="eager").
"""
import sys

import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

TOLERANCE = {torch.float32: 1e-4, torch.float64: 1e-5}


def main(export_dir: str, logits_file: str) -> int:
    reference = load_file(logits_file)
    tokens, expected = reference["tokens"], reference["logits"]
    options = {"experts_implementation": "eager"} if expected.dtype == torch.float64 else {}
    model, loading = AutoModelForCausalLM.from_pretrained(
        export_dir, dtype=expected.dtype, output_loading_info=True, **options)
    problems = {what: found for what, found in loading.items() if found}
    if problems:
        print(f"FAIL: transformers did not load every weight: {problems}")
        return 1
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=tokens).logits
    if logits.shape != expected.shape:
        print(f"FAIL: logits {tuple(logits.shape)}, Triage's {tuple(expected.shape)}")
        return 1
    difference = (logits - expected).abs().max().item()
    scale = expected.abs().max().item()
    relative = difference / scale
    tolerance = TOLERANCE[expected.dtype]
    verdict = "agrees" if relative <= tolerance else "FAIL: differs"
    print(f"{type(model).__name__} {str(expected.dtype).removeprefix('torch.')}, "
          f"{tokens.shape[0]} x {tokens.shape[1]} tokens: max |logit difference| {difference:.3g}, "
          f"max |logit| {scale:.3g}, relative {relative:.3g} (tolerance {tolerance:g}): {verdict}")
    return 0 if relative <= tolerance else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
