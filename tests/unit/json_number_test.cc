// Whole numbers read from JSON a user hands us: in range or refused, never cast blindly.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "common/json_number.h"
#include "test_support.h"

namespace triage {
namespace {

using nlohmann::json;
using testing_support::error_of;

TEST(JsonNumber, ReadsEachIntegerItsTypeHolds) {
  EXPECT_EQ(whole_number<int64_t>(json(-5), "x"), -5);
  EXPECT_EQ(whole_number<uint32_t>(json(4294967295u), "x"), 4294967295u);
  EXPECT_EQ(whole_number<int64_t>(json::parse("9223372036854775807"), "x"), 9223372036854775807LL);
  EXPECT_EQ(whole_number<uint64_t>(json::parse("18446744073709551615"), "x"),
            18446744073709551615ULL);
}

TEST(JsonNumber, RefusesIntegersOutsideTheType) {
  EXPECT_FALSE(whole_number_or_none<uint32_t>(json(4294967296LL)));
  EXPECT_FALSE(whole_number_or_none<uint64_t>(json(-1)));
  EXPECT_FALSE(whole_number_or_none<int64_t>(json::parse("9223372036854775808")));
  EXPECT_FALSE(whole_number_or_none<int32_t>(json(-2147483649LL)));
}

TEST(JsonNumber, RefusesFractionsEvenWholeValuedOnes) {
  // 4.0 is refused too: a size written as a float is a damaged file, not a size.
  EXPECT_FALSE(whole_number_or_none<int64_t>(json(4.0)));
  EXPECT_FALSE(whole_number_or_none<int64_t>(json(2e62)));
}

TEST(JsonNumber, RefusesWhatIsNotANumber) {
  EXPECT_FALSE(whole_number_or_none<int64_t>(json("4")));
  EXPECT_FALSE(whole_number_or_none<int64_t>(json(true)));
  EXPECT_FALSE(whole_number_or_none<int64_t>(json(nullptr)));
}

TEST(JsonNumber, NamesWhatWasReadInItsError) {
  EXPECT_EQ(error_of([] { whole_number<int64_t>(json(0.5), "m.json: step"); }),
            "m.json: step = 0.5; expected a whole number in range");
}

}  // namespace
}  // namespace triage
