// The units of moe.dispatch per_rank: a token's first kept choice on each destination rank.
#include <gtest/gtest.h>

#include <vector>

#include "moe/token_exchange.h"

namespace triage {
namespace {

at::Tensor flags(std::vector<int64_t> values, int64_t columns) {
  return at::tensor(values, at::kLong).view({-1, columns}).to(at::kBool);
}

TEST(TokenExchange, FirstChoicePerRankMarksEachTokensFirstKeptChoiceOnEachRank) {
  const at::Tensor rank_TK = at::tensor({0, 1, 0, 2, 2, 2, 1, 0, 1}, at::kLong).view({3, 3});
  const at::Tensor keep_TK = flags({1, 1, 1, 0, 1, 1, 1, 1, 1}, 3);
  // token 0: ranks 0, 1, 0 -> the second 0 repeats; token 1: the first choice is dropped, so
  // its second opens rank 2; token 2: ranks 1, 0, 1 -> the second 1 repeats.
  const at::Tensor expected = flags({1, 1, 0, 0, 1, 0, 1, 1, 0}, 3);
  EXPECT_TRUE(at::equal(first_choice_per_rank(rank_TK, keep_TK, 3), expected));
}

TEST(TokenExchange, ATokenWithEveryChoiceDroppedOpensNoUnit) {
  const at::Tensor rank_TK = at::tensor({1, 1}, at::kLong).view({1, 2});
  const at::Tensor keep_TK = flags({0, 0}, 2);
  EXPECT_EQ(first_choice_per_rank(rank_TK, keep_TK, 2).sum().item<int64_t>(), 0);
}

}  // namespace
}  // namespace triage
