// Does each family get its own expert? The contingency table counts[label][expert] of
// (a token's family label, its router's first choice) and its normalised mutual
// information NMI = I(label; expert) / ((H(label) + H(expert)) / 2), the arithmetic-mean
// normalisation (scikit-learn's default): 1 when the expert determines the family and back,
// 0 when they are independent. Natural logarithms; empty rows and columns do not count.
#pragma once

#include <cstdint>
#include <vector>

namespace triage {

using ContingencyTable = std::vector<std::vector<int64_t>>;  // [label][expert]

double normalized_mutual_information(const ContingencyTable& counts);

}  // namespace triage
