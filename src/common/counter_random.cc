// A keyed hash of 31-bit words: Lehmer steps modulo the Mersenne prime 2^31 - 1 with an
// additive constant (no zero fixed point) and xor-shifts (the Lehmer step alone is linear).
#include "common/counter_random.h"

#include <cmath>

namespace triage {

namespace {
constexpr int64_t kPrime = 2147483647;  // 2^31 - 1
constexpr int64_t kLow31 = 0x7fffffff;

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

at::Tensor mix(at::Tensor x) {
  x = (x + 0x9e3779b) * 48271 % kPrime;
  x = x.bitwise_xor(x.bitwise_right_shift(15));
  x = (x + 0x2545f49) * 69621 % kPrime;
  return x.bitwise_xor(x.bitwise_right_shift(11));
}

at::Tensor hashed_words(uint64_t key, const at::Tensor& counters) {
  at::Tensor c = counters.to(at::kLong);
  const auto words = at::TensorOptions().dtype(at::kLong).device(c.device());
  at::Tensor x = at::full(c.sizes(), int64_t(key & kLow31), words);
  x = mix(x.bitwise_xor(c.bitwise_and(kLow31)));
  x = mix(x.bitwise_xor(int64_t((key >> 31) & kLow31)));
  x = mix(x.bitwise_xor(c.bitwise_right_shift(31).bitwise_and(kLow31)));
  x = mix(x.bitwise_xor(int64_t(key >> 62)));
  return mix(x);
}
}  // namespace

uint64_t random_key(std::initializer_list<uint64_t> parts) {
  uint64_t key = 0x5eed;
  for (uint64_t part : parts) key = splitmix64(key ^ splitmix64(part));
  return key;
}

at::Tensor counter_uniform(uint64_t key, const at::Tensor& counters) {
  return (hashed_words(key, counters).to(at::kDouble) + 0.5) / double(kPrime);
}

at::Tensor counter_normal(uint64_t key, const at::Tensor& counters) {
  const at::Tensor u1 = counter_uniform(key, counters);
  const at::Tensor u2 = counter_uniform(splitmix64(key), counters);
  return at::sqrt(-2.0 * at::log(u1)) * at::cos((2.0 * M_PI) * u2);
}

at::Tensor keyed_dropout(const at::Tensor& x, double p, uint64_t key, const at::Tensor& counters) {
  if (p == 0) return x;
  const at::Tensor keep = counter_uniform(key, counters) >= p;
  return x * (keep.to(x.scalar_type()) / (1.0 - p));
}

at::Tensor block_counters(int64_t first_row, int64_t rows, int64_t width, at::Device device) {
  return at::arange(first_row * width, (first_row + rows) * width,
                    at::TensorOptions().dtype(at::kLong).device(device))
      .view({rows, width});
}

}  // namespace triage
