#include "train/specialisation.h"

#include <algorithm>
#include <cmath>

namespace triage {

double normalized_mutual_information(const ContingencyTable& counts) {
  const size_t rows = counts.size(), cols = rows ? counts[0].size() : 0;
  std::vector<double> row_sum(rows, 0.0), col_sum(cols, 0.0);
  double total = 0;
  for (size_t i = 0; i < rows; ++i)
    for (size_t j = 0; j < cols; ++j) {
      row_sum[i] += double(counts[i][j]);
      col_sum[j] += double(counts[i][j]);
      total += double(counts[i][j]);
    }
  if (total == 0) return 0.0;
  auto entropy = [&](const std::vector<double>& sums) {
    double h = 0;
    for (double s : sums)
      if (s > 0) h -= s / total * std::log(s / total);
    return h;
  };
  double mutual = 0;
  for (size_t i = 0; i < rows; ++i)
    for (size_t j = 0; j < cols; ++j) {
      const double n = double(counts[i][j]);
      if (n > 0) mutual += n / total * std::log(n * total / (row_sum[i] * col_sum[j]));
    }
  const double mean_entropy = 0.5 * (entropy(row_sum) + entropy(col_sum));
  // A single label or a single expert used: no information either way.
  return mean_entropy > 0 ? std::max(0.0, mutual / mean_entropy) : 0.0;
}

}  // namespace triage
