// Byte counts for people: binary units, as the memory estimate, the banner and the
// summaries print them.
#pragma once

#include <cstdio>
#include <string>

namespace triage {

// "29.98 GiB" from 1 GiB up; "256.0 MiB" below, "0.45 MiB" below 10 MiB.
inline std::string bytes_text(double bytes) {
  char text[32];
  if (bytes >= double(1ull << 30))
    std::snprintf(text, sizeof text, "%.2f GiB", bytes / double(1ull << 30));
  else
    std::snprintf(text, sizeof text, bytes < double(10 << 20) ? "%.2f MiB" : "%.1f MiB",
                  bytes / double(1 << 20));
  return text;
}

}  // namespace triage
