// Formats broken-invariant reports; they are exceptions so that a rank can report and
// abort the whole MPI job instead of dying silently.
#include "common/error.h"

namespace triage::detail {

void assertion_failed(const char* condition, const char* file, int line,
                      const std::string& message) {
  std::ostringstream out;
  out << "internal error: " << condition << " failed at " << file << ":" << line;
  if (!message.empty()) out << ": " << message;
  throw std::logic_error(out.str());
}

}  // namespace triage::detail
