// Grouped-query attention and projection biases: the layer against attention written out
// head by head, against multi-head attention whose key/value heads are copies, and its
// gradients against finite differences.
#include <gtest/gtest.h>

#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/GradMode.h>

#include <cmath>
#include <limits>

#include "config/choices.h"
#include "model/attention.h"

namespace triage {
namespace {

constexpr int64_t kWidth = 16, kHeads = 4, kKvHeads = 2, kHeadWidth = kWidth / kHeads;
constexpr int64_t kBatch = 2, kLength = 5;

constexpr double kEps = 1e-5;

CausalSelfAttention attention(int64_t kv_heads, bool rotary, bool qkv_bias = false,
                              QkNorm qk_norm = QkNorm::kNone, double rope_theta = kRopeTheta) {
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(7);
  CausalSelfAttention a(kWidth, kHeads, {kv_heads, qkv_bias, qk_norm, kEps, rope_theta}, rotary,
                        kLength, 0.1, at::kDouble, gen);
  // Biases start at zero and norm weights at one: give them values that show.
  c10::NoGradGuard no_grad;
  at::Generator values = at::make_generator<at::CPUGeneratorImpl>(5);
  for (const auto& p : a.parameters())
    if (p.name == "b_qkv" || p.name == "q_norm" || p.name == "k_norm")
      p.tensor.add_(at::randn(p.tensor.sizes(), values, at::kDouble));
  return a;
}

at::Tensor input() {
  return at::randn({kBatch, kLength, kWidth}, at::make_generator<at::CPUGeneratorImpl>(11),
                   at::kDouble);
}

at::Tensor weight(const CausalSelfAttention& a, const std::string& name) {
  for (const auto& p : a.parameters())
    if (p.name == name) return p.tensor;
  return {};
}

// RMSNorm of a vector: x / sqrt(mean(x^2) + eps) * w.
at::Tensor normed(const at::Tensor& x, const at::Tensor& w) {
  return x / std::sqrt((x * x).mean().item<double>() + kEps) * w;
}

// A head's vector at position t rotated as LLaMA's RoPE does: element i < half paired with
// i + half, turned by the angle t * theta^(-i / half).
at::Tensor rotated(const at::Tensor& head, int64_t t, double theta) {
  const int64_t half = head.size(0) / 2;
  at::Tensor out = head.clone();
  for (int64_t i = 0; i < half; ++i) {
    const double angle = double(t) * std::pow(theta, -double(i) / double(half));
    const double a = head[i].item<double>(), b = head[i + half].item<double>();
    out[i] = a * std::cos(angle) - b * std::sin(angle);
    out[i + half] = a * std::sin(angle) + b * std::cos(angle);
  }
  return out;
}

// Token i of head h attends to tokens 0..i of key/value head h / (H / K), one dot product
// at a time; biases, and the q and k norms (per head, or over the whole projection), as the
// layer has them; rotary positions with base `theta` when it is not 0.
at::Tensor written_out(const CausalSelfAttention& a, const at::Tensor& x, QkNorm qk_norm,
                       double theta = 0) {
  at::Tensor qkv = at::matmul(x, weight(a, "w_qkv"));
  if (weight(a, "b_qkv").defined()) qkv = qkv + weight(a, "b_qkv");
  const int64_t per_group = kHeads / kKvHeads, q_width = kWidth, kv_width = kKvHeads * kHeadWidth;
  at::Tensor heads = at::zeros({kBatch, kLength, kWidth}, x.options());
  for (int64_t b = 0; b < kBatch; ++b) {
    at::Tensor q_all = qkv[b].narrow(1, 0, q_width).clone(),
               k_all = qkv[b].narrow(1, q_width, kv_width).clone();
    const at::Tensor v_all = qkv[b].narrow(1, q_width + kv_width, kv_width);
    for (int64_t i = 0; i < kLength; ++i) {
      if (qk_norm == QkNorm::kProjection) {
        q_all[i] = normed(q_all[i], weight(a, "q_norm"));
        k_all[i] = normed(k_all[i], weight(a, "k_norm"));
      }
      if (qk_norm == QkNorm::kHead) {
        for (int64_t h = 0; h < kHeads; ++h)
          q_all[i]
              .narrow(0, h * kHeadWidth, kHeadWidth)
              .copy_(normed(q_all[i].narrow(0, h * kHeadWidth, kHeadWidth), weight(a, "q_norm")));
        for (int64_t g = 0; g < kKvHeads; ++g)
          k_all[i]
              .narrow(0, g * kHeadWidth, kHeadWidth)
              .copy_(normed(k_all[i].narrow(0, g * kHeadWidth, kHeadWidth), weight(a, "k_norm")));
      }
    }
    for (int64_t i = 0; i < kLength && theta > 0; ++i) {
      for (int64_t h = 0; h < kHeads; ++h) {
        at::Tensor q = q_all[i].narrow(0, h * kHeadWidth, kHeadWidth);
        q.copy_(rotated(q, i, theta));
      }
      for (int64_t g = 0; g < kKvHeads; ++g) {
        at::Tensor k = k_all[i].narrow(0, g * kHeadWidth, kHeadWidth);
        k.copy_(rotated(k, i, theta));
      }
    }
    for (int64_t h = 0; h < kHeads; ++h) {
      const int64_t g = h / per_group;
      const at::Tensor q = q_all.narrow(1, h * kHeadWidth, kHeadWidth);
      const at::Tensor k = k_all.narrow(1, g * kHeadWidth, kHeadWidth);
      const at::Tensor v = v_all.narrow(1, g * kHeadWidth, kHeadWidth);
      for (int64_t i = 0; i < kLength; ++i) {
        std::vector<double> scores;
        double largest = -std::numeric_limits<double>::infinity();
        for (int64_t j = 0; j <= i; ++j) {
          scores.push_back((q[i] * k[j]).sum().item<double>() / std::sqrt(double(kHeadWidth)));
          largest = std::max(largest, scores.back());
        }
        double total = 0;
        for (double& s : scores) total += (s = std::exp(s - largest));
        at::Tensor out = heads[b][i].narrow(0, h * kHeadWidth, kHeadWidth);
        for (int64_t j = 0; j <= i; ++j) out.add_(v[j] * (scores[size_t(j)] / total));
      }
    }
  }
  return at::matmul(heads, weight(a, "w_out"));
}

TEST(GroupedQueryAttention, KeepsOneKeyAndValueProjectionPerGroup) {
  EXPECT_EQ(weight(attention(kKvHeads, false), "w_qkv").sizes(),
            (at::IntArrayRef{kWidth, kWidth + 2 * kKvHeads * kHeadWidth}));
}

TEST(GroupedQueryAttention, MatchesAttentionWrittenOutHeadByHead) {
  c10::NoGradGuard no_grad;
  const CausalSelfAttention a = attention(kKvHeads, /*rotary=*/false);
  const at::Tensor x = input();
  EXPECT_TRUE(at::allclose(a.forward(x), written_out(a, x, QkNorm::kNone), 0, 1e-12));
}

TEST(GroupedQueryAttention, WithBiasesMatchesAttentionWrittenOutHeadByHead) {
  c10::NoGradGuard no_grad;
  const CausalSelfAttention a = attention(kKvHeads, /*rotary=*/false, /*qkv_bias=*/true);
  const CausalSelfAttention plain = attention(kKvHeads, /*rotary=*/false);
  const at::Tensor x = input();
  EXPECT_TRUE(at::allclose(a.forward(x), written_out(a, x, QkNorm::kNone), 0, 1e-12));
  EXPECT_FALSE(at::allclose(a.forward(x), plain.forward(x), 0, 1e-6)) << "the biases must matter";
}

TEST(GroupedQueryAttention, NormedQueriesAndKeysMatchAttentionWrittenOut) {
  c10::NoGradGuard no_grad;
  const at::Tensor x = input();
  const CausalSelfAttention plain = attention(kKvHeads, /*rotary=*/false, /*qkv_bias=*/true);
  for (const QkNorm norm : {QkNorm::kHead, QkNorm::kProjection}) {
    const CausalSelfAttention a = attention(kKvHeads, /*rotary=*/false, /*qkv_bias=*/true, norm);
    EXPECT_TRUE(at::allclose(a.forward(x), written_out(a, x, norm), 0, 1e-12)) << name_of(norm);
    EXPECT_FALSE(at::allclose(a.forward(x), plain.forward(x), 0, 1e-6))
        << name_of(norm) << ": the norms must matter";
  }
}

TEST(GroupedQueryAttention, RotaryPositionsOfAnyBaseMatchAttentionWrittenOut) {
  c10::NoGradGuard no_grad;
  const at::Tensor x = input();
  // LLaMA's base and Mixtral's and Qwen's: the rotation angles, hence the outputs, differ.
  for (const double theta : {1e4, 1e6}) {
    const CausalSelfAttention a =
        attention(kKvHeads, /*rotary=*/true, /*qkv_bias=*/true, QkNorm::kHead, theta);
    EXPECT_TRUE(at::allclose(a.forward(x), written_out(a, x, QkNorm::kHead, theta), 0, 1e-12))
        << "theta " << theta;
  }
  EXPECT_FALSE(at::allclose(attention(kKvHeads, true, false, QkNorm::kNone, 1e4).forward(x),
                            attention(kKvHeads, true, false, QkNorm::kNone, 1e6).forward(x), 0,
                            1e-6));
}

TEST(GroupedQueryAttention, EqualsMultiHeadAttentionWithCopiedKeyValueHeads) {
  // Rotary included: every query head of a group sees the same rotated keys.
  c10::NoGradGuard no_grad;
  const CausalSelfAttention grouped = attention(kKvHeads, /*rotary=*/true);
  const CausalSelfAttention full = attention(kHeads, /*rotary=*/true);
  const at::Tensor w = weight(grouped, "w_qkv");
  std::vector<at::Tensor> columns = {w.narrow(1, 0, kWidth)};
  for (int64_t part = 0; part < 2; ++part)  // keys, then values: each head once per query head
    for (int64_t h = 0; h < kHeads; ++h)
      columns.push_back(w.narrow(
          1, kWidth + (part * kKvHeads + h / (kHeads / kKvHeads)) * kHeadWidth, kHeadWidth));
  weight(full, "w_qkv").copy_(at::cat(columns, 1));
  weight(full, "w_out").copy_(weight(grouped, "w_out"));
  const at::Tensor x = input();
  EXPECT_TRUE(at::allclose(grouped.forward(x), full.forward(x), 0, 1e-12));
}

// The central difference of <attention(x), r> in one weight, at step 1e-6 in float64.
double finite_difference(const CausalSelfAttention& a, at::Tensor entry, const at::Tensor& x,
                         const at::Tensor& r) {
  constexpr double kStep = 1e-6;
  const double kept = entry.item<double>();
  entry.fill_(kept + kStep);
  const double up = (a.forward(x) * r).sum().item<double>();
  entry.fill_(kept - kStep);
  const double down = (a.forward(x) * r).sum().item<double>();
  entry.fill_(kept);
  return (up - down) / (2 * kStep);
}

TEST(GroupedQueryAttention, BiasGradientMatchesFiniteDifferences) {
  const CausalSelfAttention a = attention(kKvHeads, /*rotary=*/true, /*qkv_bias=*/true);
  const at::Tensor x = input();
  const at::Tensor r = at::randn({kBatch, kLength, kWidth},
                                 at::make_generator<at::CPUGeneratorImpl>(13), at::kDouble);
  at::Tensor b = weight(a, "b_qkv");
  (a.forward(x) * r).sum().backward();
  const at::Tensor grad = b.grad().clone();
  c10::NoGradGuard no_grad;
  for (const int64_t i : {int64_t(1), kWidth + 2, kWidth + kHeadWidth + 3,
                          kWidth + 2 * kHeadWidth + 1, kWidth + 3 * kHeadWidth + 2})
    EXPECT_NEAR(grad[i].item<double>(), finite_difference(a, b[i], x, r), 1e-7)
        << "b_qkv[" << i << "]";
}

TEST(GroupedQueryAttention, NormWeightGradientsMatchFiniteDifferences) {
  const at::Tensor x = input();
  const at::Tensor r = at::randn({kBatch, kLength, kWidth},
                                 at::make_generator<at::CPUGeneratorImpl>(13), at::kDouble);
  for (const QkNorm norm : {QkNorm::kHead, QkNorm::kProjection}) {
    const CausalSelfAttention a = attention(kKvHeads, /*rotary=*/true, /*qkv_bias=*/false, norm);
    (a.forward(x) * r).sum().backward();
    for (const char* name : {"q_norm", "k_norm"}) {
      at::Tensor w = weight(a, name);
      const at::Tensor grad = w.grad().clone();
      c10::NoGradGuard no_grad;
      for (const int64_t i : {int64_t(0), w.numel() - 1})
        EXPECT_NEAR(grad[i].item<double>(), finite_difference(a, w[i], x, r), 1e-7)
            << name_of(norm) << " " << name << "[" << i << "]";
    }
  }
}

TEST(GroupedQueryAttention, GradientMatchesFiniteDifferences) {
  const CausalSelfAttention a = attention(kKvHeads, /*rotary=*/true);
  const at::Tensor x = input();
  const at::Tensor r = at::randn({kBatch, kLength, kWidth},
                                 at::make_generator<at::CPUGeneratorImpl>(13), at::kDouble);
  at::Tensor w = weight(a, "w_qkv");
  (a.forward(x) * r).sum().backward();
  const at::Tensor grad = w.grad().clone();
  c10::NoGradGuard no_grad;
  // A query, a key and a value column of each group.
  for (const int64_t column : {int64_t(1), kWidth + 2, kWidth + kHeadWidth + 3,
                               kWidth + 2 * kHeadWidth + 1, kWidth + 3 * kHeadWidth + 2})
    for (const int64_t row : {int64_t(0), kWidth - 1})
      EXPECT_NEAR(grad[row][column].item<double>(), finite_difference(a, w[row][column], x, r),
                  1e-7)
          << "w_qkv[" << row << "][" << column << "]";
}

}  // namespace
}  // namespace triage
