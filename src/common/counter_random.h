// Layout-independent random numbers for training-time noise (router jitter and noise,
// dropout). A draw is a pure function of a 64-bit key and a counter, not of a generator's
// position, so a row draws the same number whether it is computed on rank 0 of 1 or rank 3
// of 4, in which micro-batch order, and after a resume: the EP run stays equal to the
// one-rank reference with noise on, and nothing needs checkpointing.
//
// The hash works on 31-bit words in int64 tensors (multipliers below 2^31, products below
// 2^62), so no tensor operation overflows. It is a hash, not a cryptographic generator;
// its moments and independence are what the tests check. Cost on one CPU core: about
// 35 ns per draw (attention dropout on 32 x 4 heads x 96 x 96 probabilities: ~40 ms).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <initializer_list>

namespace triage {

// A key from the parts that name one stream (seed, layer, step, micro-batch, purpose).
uint64_t random_key(std::initializer_list<uint64_t> parts);

// counters: int64, non-negative. Uniform in (0, 1), float64, the counters' shape.
at::Tensor counter_uniform(uint64_t key, const at::Tensor& counters);
// Standard normal (Box-Muller on two uniforms of the same counter), float64.
at::Tensor counter_normal(uint64_t key, const at::Tensor& counters);

// Counters for a [rows, width] block whose first row is global row `first_row`:
// (first_row + r) * width + c.
at::Tensor block_counters(int64_t first_row, int64_t rows, int64_t width,
                          at::Device device = at::kCPU);

// Inverted dropout with a keyed mask: x * (u >= p) / (1 - p), u = counter_uniform(key,
// counters) (counters broadcastable to x). p = 0 returns x itself.
at::Tensor keyed_dropout(const at::Tensor& x, double p, uint64_t key, const at::Tensor& counters);

}  // namespace triage
