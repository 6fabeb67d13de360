#!/usr/bin/env python3
"""./launch/generate MODEL_DIR [PROMPT]: loads an exported model's tokenizer and model with
AutoTokenizer and AutoModelForCausalLM, as a user would, checks that the tokenizer decodes
what it encodes, and prints a greedy continuation of the prompt (by default a protein
fragment for the amino-acid vocabulary, else a line of English).

Fails when the folder has no tokenizer, when decode(encode(prompt)) is not the prompt, or
when generate() produces no new token."""
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


def main(model_dir: str, prompt: str | None) -> int:
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if prompt is None:
        prompt = "MKTAYIAKQR" if "<bos>" in tokenizer.get_vocab() and "W" in tokenizer.get_vocab() \
            else "This program is free software"
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    decoded = tokenizer.decode(ids[0], skip_special_tokens=True)
    if decoded != prompt:
        print(f"FAIL: the tokenizer decodes {prompt!r} encoded as {ids[0].tolist()} to {decoded!r}")
        return 1
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.eval()
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=24, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id or 0)
    new = out[0, ids.shape[1]:]
    if new.numel() == 0:
        print("FAIL: generate() added no token")
        return 1
    print(f"{type(model).__name__} with {type(tokenizer).__name__} ({len(tokenizer)} ids): "
          f"{prompt!r} -> {tokenizer.decode(new, skip_special_tokens=True)!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None))
