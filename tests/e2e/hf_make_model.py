#!/usr/bin/env python3
"""hf_make_model.py OUT_DIR CLASS [--dtype float32|bfloat16]: builds a transformers model of
CLASS (mixtral) from its published config scaled down with the same ratios, with transformers'
own random initialisation, and saves it with save_pretrained: a model as a user downloads it,
made by transformers, never by Triage.

Mixtral-8x7B's config.json: 32 query and 8 key/value heads (4 per group), 8 experts of which
2 per token, SwiGLU, RMSNorm eps 1e-5, RoPE theta 1e6, tied embeddings off, no sliding
window. Scaled down: width 64, 8 heads of 8 and 2 key/value heads, 2 layers, experts of
width 96, vocabulary 128.
"""
import argparse

import torch
from transformers import MixtralConfig, MixtralForCausalLM

SCALED = {
    "mixtral": lambda: MixtralForCausalLM(MixtralConfig(
        vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=8, num_key_value_heads=2, num_local_experts=8,
        num_experts_per_tok=2, max_position_embeddings=64, rms_norm_eps=1e-5,
        rope_theta=1e6, sliding_window=None, tie_word_embeddings=False,
        router_aux_loss_coef=0.02)),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("model", choices=sorted(SCALED))
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    args = parser.parse_args()
    torch.manual_seed(0)
    model = SCALED[args.model]().to(getattr(torch, args.dtype))
    model.save_pretrained(args.out)


if __name__ == "__main__":
    main()
