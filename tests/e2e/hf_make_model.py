#!/usr/bin/env python3
"""hf_make_model.py OUT_DIR CLASS [--dtype float32|bfloat16] [--vocab N]: builds a transformers model of
CLASS (mixtral, qwen2_moe, qwen3_moe, olmoe) from its published config scaled down with the same ratios,
with transformers' own random initialisation, and saves it with save_pretrained: a model as
a user downloads it, made by transformers, never by Triage.

The published configs (config.json on the Hub) and what is kept when scaled down:
- Mixtral-8x7B: 32 query and 8 key/value heads (4 per group), 8 experts of which 2 per
  token with renormalised gates, SwiGLU, RMSNorm eps 1e-5, RoPE theta 1e6, untied. Scaled:
  width 64, 8 heads of 8 and 2 key/value heads, 2 layers, experts of width 96.
- Qwen1.5-MoE-A2.7B (Qwen2-MoE): width 2048, 16 heads with q, k and v biases, 60 experts of
  width 1408 of which 4 per token, not renormalised, a shared expert 4 experts wide behind a
  per-token sigmoid gate, RMSNorm eps 1e-6, RoPE theta 1e6, untied. Scaled: width 64, 4
  heads of 16, 32 experts of width 44, 2 per token (16 experts per choice, as 60 / 4), a
  shared expert of width 176.
- Qwen3-30B-A3B: width 2048, 32 query and 4 key/value heads (8 per group) of width 128
  (twice width / heads), per-head RMSNorm on queries and keys, 128 experts of width 768 of
  which 8 per token renormalised, RMSNorm eps 1e-6, RoPE theta 1e6, untied. Scaled: width
  64, 8 heads of 16 and 1 key/value head, 32 experts of width 24, 2 per token.
- OLMoE-1B-7B: width 2048, 16 heads (no grouping), RMSNorm over the whole query and key
  projections, 64 experts of width 1024 of which 8 per token, not renormalised, RMSNorm eps
  1e-5, RoPE theta 10000, untied, no clipping. Scaled: width 64, 4 heads of 16, 16 experts
  of width 32, 2 per token.
All with 2 layers and a vocabulary of 128 (or --vocab, to match a tokenizer).
"""
import argparse

import torch
from transformers import (MixtralConfig, MixtralForCausalLM, OlmoeConfig, OlmoeForCausalLM,
                          Qwen2MoeConfig, Qwen2MoeForCausalLM, Qwen3MoeConfig,
                          Qwen3MoeForCausalLM)

SCALED = {
    "mixtral": lambda vocab: MixtralForCausalLM(MixtralConfig(
        vocab_size=vocab, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=8, num_key_value_heads=2, num_local_experts=8,
        num_experts_per_tok=2, max_position_embeddings=64, rms_norm_eps=1e-5,
        rope_theta=1e6, sliding_window=None, tie_word_embeddings=False,
        router_aux_loss_coef=0.02)),
    "qwen2_moe": lambda vocab: Qwen2MoeForCausalLM(Qwen2MoeConfig(
        vocab_size=vocab, hidden_size=64, intermediate_size=176, moe_intermediate_size=44,
        shared_expert_intermediate_size=176, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=4, num_experts=32, num_experts_per_tok=2, norm_topk_prob=False,
        qkv_bias=True, max_position_embeddings=64, rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": 1e6}, tie_word_embeddings=False,
        router_aux_loss_coef=0.001)),
    "qwen3_moe": lambda vocab: Qwen3MoeForCausalLM(Qwen3MoeConfig(
        vocab_size=vocab, hidden_size=64, intermediate_size=192, moe_intermediate_size=24,
        num_hidden_layers=2, num_attention_heads=8, num_key_value_heads=1, head_dim=16,
        num_experts=32, num_experts_per_tok=2, norm_topk_prob=True, max_position_embeddings=64,
        rms_norm_eps=1e-6, rope_parameters={"rope_type": "default", "rope_theta": 1e6},
        tie_word_embeddings=False, router_aux_loss_coef=0.001)),
    "olmoe": lambda vocab: OlmoeForCausalLM(OlmoeConfig(
        vocab_size=vocab, hidden_size=64, intermediate_size=32, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, num_experts=16, num_experts_per_tok=2,
        norm_topk_prob=False, max_position_embeddings=64, rms_norm_eps=1e-5,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0}, clip_qkv=None,
        tie_word_embeddings=False, router_aux_loss_coef=0.01, eos_token_id=None)),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("model", choices=sorted(SCALED))
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--vocab", type=int, default=128)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = SCALED[args.model](args.vocab).to(getattr(torch, args.dtype))
    # transformers starts norm weights at one and biases at zero; make them show, as a
    # trained model's do.
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("norm.weight") or name.endswith("proj.bias"):
                parameter.add_(0.1 * torch.randn_like(parameter))
    model.save_pretrained(args.out)


if __name__ == "__main__":
    main()
