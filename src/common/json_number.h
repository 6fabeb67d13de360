// A JSON number read as a whole number of type T, or refused. nlohmann's get<T>() of a float
// or an out-of-range value converts with a plain cast, which for 2e62 or -1 as an unsigned
// is undefined behaviour (found by fuzz_checkpoint); every integer a user's file hands us
// goes through here instead.
#pragma once

#include <nlohmann/json.hpp>

#include <limits>
#include <optional>
#include <string>

#include "common/error.h"

namespace triage {

// `value` as a T when it is an integer JSON number that T holds; nullopt otherwise.
template <class T>
std::optional<T> whole_number_or_none(const nlohmann::json& value) {
  if (value.is_number_unsigned()) {
    const uint64_t n = value.get<uint64_t>();
    if (n > uint64_t(std::numeric_limits<T>::max())) return std::nullopt;
    return T(n);
  }
  if (value.is_number_integer()) {
    const int64_t n = value.get<int64_t>();
    if (std::numeric_limits<T>::is_signed ? n < int64_t(std::numeric_limits<T>::min()) : n < 0)
      return std::nullopt;
    if (n > 0 && uint64_t(n) > uint64_t(std::numeric_limits<T>::max())) return std::nullopt;
    return T(n);
  }
  return std::nullopt;
}

// `value` as a T, or Error "<what> = <value>; expected a whole number in range".
template <class T>
T whole_number(const nlohmann::json& value, const std::string& what) {
  const std::optional<T> n = whole_number_or_none<T>(value);
  if (!n) throw Error(what + " = " + value.dump() + "; expected a whole number in range");
  return *n;
}

}  // namespace triage
