// Forced routing (moe.routing_override) and the receive bound, on routings small enough to
// check by hand or by counting.
#include <gtest/gtest.h>

#include <cmath>

#include "moe/capacity.h"
#include "moe/routing_override.h"
#include "test_support.h"

namespace triage {
namespace {

using namespace testing_support;
using Kind = RoutingOverride::Kind;

// A router's choice to override: token t picked experts (t, t + 1) mod E.
at::Tensor router_choice(int64_t tokens, int64_t experts) {
  at::Tensor t = at::arange(tokens, at::kLong).unsqueeze(1);
  return at::cat({t % experts, (t + 1) % experts}, 1);
}

at::Tensor uniform_scores(int64_t tokens, int64_t experts) {
  return at::full({tokens, experts}, 1.0 / double(experts), at::kDouble);
}

RoutingOverride rule(Kind kind) {
  RoutingOverride r;
  r.kind = kind;
  return r;
}

TEST(RoutingOverride, NoneKeepsTheRoutersChoice) {
  at::Tensor chosen = router_choice(5, 4);
  EXPECT_TRUE(at::equal(override_routing(rule(Kind::kNone), chosen, uniform_scores(5, 4), 0, 1, 2),
                        chosen));
}

TEST(RoutingOverride, BalancedIsRoundRobinOverGlobalAssignments) {
  // Tokens 3, 4 of the global batch, top-2 over 4 experts: assignments 6..9 -> 2, 3, 0, 1.
  at::Tensor experts =
      override_routing(rule(Kind::kBalanced), router_choice(2, 4), uniform_scores(2, 4), 3, 1, 2);
  EXPECT_TRUE(at::equal(experts, longs({2, 3, 0, 1}, {2, 2})));
}

TEST(RoutingOverride, HotWithFractionOneSendsEveryAssignmentToTheHotExpert) {
  RoutingOverride hot = rule(Kind::kHot);
  hot.expert = 3;
  hot.fraction = 1.0;
  EXPECT_TRUE(at::equal(override_routing(hot, router_choice(7, 4), uniform_scores(7, 4), 0, 1, 2),
                        at::full({7, 2}, 3, at::kLong)));
}

TEST(RoutingOverride, HotSendsItsFractionAndLeavesTheRestToTheRouter) {
  RoutingOverride hot = rule(Kind::kHot);
  hot.expert = 3;
  hot.fraction = 0.3;
  const int64_t tokens = 20000;
  at::Tensor chosen = router_choice(tokens, 3);  // the router never picks expert 3
  at::Tensor experts = override_routing(hot, chosen, uniform_scores(tokens, 4), 0, 5, 1);
  const double share = (experts == 3).sum().item<double>() / double(2 * tokens);
  EXPECT_NEAR(share, 0.3, 0.01);  // binomial sd ~0.003
  EXPECT_TRUE(at::equal(experts.masked_select(experts != 3), chosen.masked_select(experts != 3)));
}

TEST(RoutingOverride, ZipfFrequenciesFollowOneOverRankToTheS) {
  RoutingOverride zipf = rule(Kind::kZipf);
  zipf.exponent = 1.0;
  const int64_t tokens = 30000, experts = 4;
  at::Tensor chosen = override_routing(zipf, router_choice(tokens, experts),
                                       uniform_scores(tokens, experts), 0, 9, 1);
  const double harmonic = 1.0 + 1.0 / 2 + 1.0 / 3 + 1.0 / 4;
  for (int64_t e = 0; e < experts; ++e)
    EXPECT_NEAR((chosen == e).sum().item<double>() / double(2 * tokens),
                1.0 / double(e + 1) / harmonic, 0.01)
        << "expert " << e;
}

TEST(RoutingOverride, EmptyRankTakesTheTopScoresAmongOtherRanksExperts) {
  RoutingOverride empty = rule(Kind::kEmptyRank);
  empty.rank = 1;                                    // experts 2, 3 of 4 at 2 per rank
  at::Tensor scores = doubles({0.1, 0.2, 0.4, 0.3,   //
                               0.5, 0.1, 0.3, 0.1},  //
                              {2, 4});
  at::Tensor experts = override_routing(empty, longs({2, 3, 0, 2}, {2, 2}), scores, 0, 1, 2);
  EXPECT_TRUE(at::equal(experts, longs({1, 0, 0, 1}, {2, 2})));
}

TEST(RoutingOverride, ABatchSplitInTwoRoutesLikeTheWholeBatch) {
  RoutingOverride zipf = rule(Kind::kZipf);
  zipf.exponent = 1.5;
  at::Tensor whole = override_routing(zipf, router_choice(10, 8), uniform_scores(10, 8), 0, 4, 2);
  at::Tensor first =
      override_routing(zipf, router_choice(10, 8).narrow(0, 0, 4), uniform_scores(4, 8), 0, 4, 2);
  at::Tensor second =
      override_routing(zipf, router_choice(10, 8).narrow(0, 4, 6), uniform_scores(6, 8), 4, 4, 2);
  EXPECT_TRUE(at::equal(at::cat({first, second}), whole));
}

TEST(ReceiveBound, QuotaIsFloorOfFactorTimesTokensTimesKOverRanks) {
  EXPECT_EQ(receive_quota(1.5, 8, 2, 4), 6);  // exactly 6, not rounded down to 5
  EXPECT_EQ(receive_quota(1.0, 5, 2, 4), 2);  // floor(2.5)
  EXPECT_EQ(receive_quota(0.0, 5, 2, 4), kDropless);
}

TEST(ReceiveBound, DropsLaterAssignmentsBeyondTheQuotaPerDestinationRank) {
  // 4 experts on 2 ranks; rank 0 holds experts 0, 1. Quota 2 rows per destination.
  at::Tensor experts = longs({0, 1,   // token 0: both to rank 0
                              1, 2,   // token 1: rank 0 (third row: dropped), rank 1
                              3, 0,   // token 2: rank 1, rank 0 (dropped)
                              2, 3},  // token 3: rank 1 (third row for rank 1: dropped), dropped
                             {4, 2});
  at::Tensor keep = bools({1, 1, 1, 1, 1, 1, 1, 1}, {4, 2});
  at::Tensor dropped;
  at::Tensor bounded = receive_bound_keep_mask(experts, keep, 2, 2, 2, dropped);
  EXPECT_TRUE(at::equal(bounded, bools({1, 1, 0, 1, 1, 0, 0, 0}, {4, 2})));
  EXPECT_TRUE(at::equal(dropped, at::tensor({2, 2}, at::kLong)));
}

TEST(ReceiveBound, AssignmentsAlreadyOverCapacityDoNotUseTheQuota) {
  at::Tensor experts = longs({0, 0, 0}, {3, 1});
  at::Tensor keep = bools({0, 1, 1}, {3, 1});
  at::Tensor dropped;
  at::Tensor bounded = receive_bound_keep_mask(experts, keep, 1, 1, 2, dropped);
  EXPECT_TRUE(at::equal(bounded, bools({0, 1, 1}, {3, 1})));
  EXPECT_TRUE(at::equal(dropped, at::tensor({0}, at::kLong)));
}

}  // namespace
}  // namespace triage
