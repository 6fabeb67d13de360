// A keyed hash of 31-bit words: two rounds of a MurmurHash3-style finaliser (xor-shift,
// multiply by an odd constant modulo 2^31, twice), each a bijection on [0, 2^31), so
// distinct counters below 2^31 never share a word under one key. In place, and with no
// division: the finaliser is most of the cost of attention dropout on a CPU.
#include "common/counter_random.h"

#include <cmath>

namespace triage {

namespace {
constexpr int64_t kLow31 = 0x7fffffff;
constexpr double kWords = 2147483648.0;  // 2^31

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Multipliers below 2^31 on words below 2^31: products stay below 2^62, no overflow.
void finalise(at::Tensor& x) {
  x.bitwise_xor_(x.bitwise_right_shift(16));
  x.mul_(0x45d9f3b).bitwise_and_(kLow31);
  x.bitwise_xor_(x.bitwise_right_shift(15));
  x.mul_(0x2c1b3c6d).bitwise_and_(kLow31);
  x.bitwise_xor_(x.bitwise_right_shift(16));
}

// Uniform words in [0, 2^31), one per counter.
at::Tensor hashed_words(uint64_t key, const at::Tensor& counters) {
  const at::Tensor c = counters.to(at::kLong);
  at::Tensor x = c.bitwise_and(kLow31).bitwise_xor_(int64_t(key & kLow31));
  finalise(x);
  const int64_t key_high = int64_t(((key >> 31) ^ (key >> 62)) & kLow31);
  x.bitwise_xor_(c.bitwise_right_shift(31).bitwise_and_(kLow31).bitwise_xor_(key_high));
  finalise(x);
  return x;
}
}  // namespace

uint64_t random_key(std::initializer_list<uint64_t> parts) {
  uint64_t key = 0x5eed;
  for (uint64_t part : parts) key = splitmix64(key ^ splitmix64(part));
  return key;
}

at::Tensor counter_uniform(uint64_t key, const at::Tensor& counters) {
  return (hashed_words(key, counters).to(at::kDouble) + 0.5) / kWords;
}

at::Tensor counter_normal(uint64_t key, const at::Tensor& counters) {
  const at::Tensor u1 = counter_uniform(key, counters);
  const at::Tensor u2 = counter_uniform(splitmix64(key), counters);
  return at::sqrt(-2.0 * at::log(u1)) * at::cos((2.0 * M_PI) * u2);
}

at::Tensor keyed_dropout(const at::Tensor& x, double p, uint64_t key, const at::Tensor& counters) {
  if (p == 0) return x;
  // Compared as words: u >= p exactly when word + 0.5 >= p * 2^31.
  const at::Tensor keep = hashed_words(key, counters) >= int64_t(std::ceil(p * kWords - 0.5));
  return x * (keep.to(x.scalar_type()) / (1.0 - p));
}

at::Tensor block_counters(int64_t first_row, int64_t rows, int64_t width, at::Device device) {
  return at::arange(first_row * width, (first_row + rows) * width,
                    at::TensorOptions().dtype(at::kLong).device(device))
      .view({rows, width});
}

}  // namespace triage
