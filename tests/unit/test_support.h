// Small helpers shared by the unit tests: seeded generators, configs, tensor literals.
#pragma once

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/GradMode.h>

#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "common/error.h"

#include "config/config.h"

namespace triage::testing_support {

inline at::Generator generator(uint64_t seed) {
  return at::make_generator<at::CPUGeneratorImpl>(seed);
}

inline at::Tensor doubles(std::vector<double> values, std::vector<int64_t> shape) {
  return at::tensor(values, at::kDouble).view(shape);
}

inline at::Tensor longs(std::vector<int64_t> values, std::vector<int64_t> shape) {
  return at::tensor(values, at::kLong).view(shape);
}

inline at::Tensor bools(std::vector<int64_t> values, std::vector<int64_t> shape) {
  return at::tensor(values, at::kLong).to(at::kBool).view(shape);
}

// Writes `text` to a file named `name` in the test temp dir and returns its path.
inline std::string write_temp_file(const std::string& name, const std::string& text) {
  std::string path = testing::TempDir() + name;
  std::ofstream(path) << text;
  return path;
}

// The message of the triage::Error that `action` throws, or "" if it throws none.
template <class Action>
std::string error_of(Action&& action) {
  try {
    action();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// Overwrites a parameter's values without recording it in autograd.
inline void assign(at::Tensor& parameter, const at::Tensor& values) {
  c10::NoGradGuard no_grad;
  parameter.copy_(values);
}

inline MoeConfig moe_config(int64_t num_experts, int64_t top_k) {
  MoeConfig config;
  config.num_experts = num_experts;
  config.top_k = top_k;
  return config;
}

}  // namespace triage::testing_support
