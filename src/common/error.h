// Errors for Triage. `Error` carries a one-line message meant for the user (bad config,
// bad file, bad command line); TRIAGE_ASSERT guards invariants that only a bug can break.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace triage {

// A recoverable problem the user can fix; what() is the whole one-line message.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {
[[noreturn]] void assertion_failed(const char* condition, const char* file, int line,
                                   const std::string& message);
}  // namespace detail

}  // namespace triage

// TRIAGE_ASSERT(cond, "text" << value ...): a broken invariant, reported with file and line.
#define TRIAGE_ASSERT(cond, stream_message)                                                       \
  do {                                                                                            \
    if (!(cond)) {                                                                                \
      std::ostringstream triage_assert_stream_;                                                   \
      triage_assert_stream_ << stream_message;                                                    \
      ::triage::detail::assertion_failed(#cond, __FILE__, __LINE__, triage_assert_stream_.str()); \
    }                                                                                             \
  } while (0)
