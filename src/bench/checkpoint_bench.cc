// Peak memory is read from the kernel (VmHWM in /proc/self/status), reset before each
// phase (writing 5 to /proc/self/clear_refs, Linux 4.0+), so each figure is that phase's
// own high-water mark above the resident memory it started from.
#include "bench/checkpoint_bench.h"

#include <malloc.h>
#include <mpi.h>

#include <c10/core/GradMode.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <nlohmann/json.hpp>

#include "bench/harness.h"
#include "bench/options.h"
#include "bench/timing.h"
#include "checkpoint/checkpoint.h"
#include "common/error.h"
#include "config/config.h"
#include "model/transformer.h"
#include "parallel/agreement.h"
#include "parallel/process_groups.h"
#include "train/optimizer.h"

namespace triage {
namespace {

// A field of /proc/self/status in bytes ("VmRSS", "VmHWM"); -1 where the kernel has none.
double status_bytes(const std::string& field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(field + ":", 0) == 0) return 1024.0 * std::stod(line.substr(field.size() + 1));
  return -1;
}

void reset_peak() {
  ::malloc_trim(0);  // what the previous phase freed is not counted as this one's baseline
  std::ofstream("/proc/self/clear_refs") << "5";
}

struct PhaseMemory {
  double start_bytes = 0, peak_bytes = 0;
  nlohmann::ordered_json json() const {
    return {{"resident_at_start_bytes", start_bytes},
            {"peak_bytes", peak_bytes},
            {"peak_above_start_bytes", peak_bytes - start_bytes}};
  }
};

template <class Phase>
PhaseMemory measure(Phase&& phase) {
  reset_peak();
  PhaseMemory m;
  m.start_bytes = status_bytes("VmRSS");
  phase();
  m.peak_bytes = status_bytes("VmHWM");
  return m;
}

int checkpoint_bench(const CheckpointBenchOptions& o) {
  Config config;
  ProcessGroups groups;
  agree([&] {
    config = load_config(o.config_path, o.overrides);
    groups = make_process_groups(config, nullptr);
  });
  const at::ScalarType dtype = config.train.dtype == DType::kFloat64 ? at::kDouble : at::kFloat;
  Transformer model(config, dtype, groups.ep.get(), groups.world.get());
  const ParameterList parameters = model.parameters();
  auto optimizer = make_optimizer(parameters, config.train);
  {  // one step on zero gradients gives every parameter its AdamW moments, as training does
    for (const auto& p : parameters) p.tensor.mutable_grad() = at::zeros_like(p.tensor);
    optimizer->step();
    for (const auto& p : parameters) p.tensor.mutable_grad() = at::Tensor();
  }
  double state_bytes = 0, largest_tensor_bytes = 0;
  for (const auto& p : parameters) {
    const double bytes = double(p.tensor.numel() * p.tensor.element_size());
    state_bytes += 3 * bytes;  // weights and two moments
    const double one = p.sharding == Sharding::kExpert ? bytes / double(p.tensor.size(0)) : bytes;
    largest_tensor_bytes = std::max(largest_tensor_bytes, one);
  }
  const GroupLayout& layout = groups.layout;
  if (layout.world_rank == 0) {
    std::filesystem::remove_all(o.run_dir);
    std::filesystem::create_directories(o.run_dir);
  }
  groups.world->barrier();

  TrainingState state{parameters, optimizer.get(), model.moe_layers(), 1, 0};
  const PhaseMemory save =
      measure([&] { save_checkpoint(o.run_dir, config, groups, state, 1, "bench"); });
  const PhaseMemory load = measure([&] { load_checkpoint(o.run_dir, config, groups, state); });

  const std::vector<double> save_peaks =
      bench::gather_from_ranks(save.peak_bytes - save.start_bytes);
  const std::vector<double> load_peaks =
      bench::gather_from_ranks(load.peak_bytes - load.start_bytes);
  if (layout.world_rank != 0) return 0;
  const double gib = 1024.0 * 1024.0 * 1024.0;
  std::cout << "# checkpoint memory: " << o.config_path << ", " << layout.world_size
            << " ranks, EP " << layout.ep_size << "; rank 0's state (weights + AdamW moments) "
            << std::fixed << std::setprecision(3) << state_bytes / gib << " GiB, largest tensor "
            << largest_tensor_bytes / gib << " GiB\n";
  std::cout << std::left << std::setw(8) << "phase" << std::right << std::setw(24)
            << "peak above start GiB" << std::setw(22) << "x largest tensor" << std::setw(18)
            << "x rank 0 state\n";
  for (const auto& [name, peaks] : {std::pair{"save", save_peaks}, std::pair{"load", load_peaks}}) {
    const double worst = *std::max_element(peaks.begin(), peaks.end());
    std::cout << std::left << std::setw(8) << name << std::right << std::setw(24) << worst / gib
              << std::setw(22) << std::setprecision(2) << worst / largest_tensor_bytes
              << std::setw(17) << worst / state_bytes << "\n"
              << std::setprecision(3);
  }
  const nlohmann::ordered_json result = {{"benchmark", "checkpoint"},
                                         {"config", o.config_path},
                                         {"overrides", o.overrides},
                                         {"ranks", layout.world_size},
                                         {"expert_parallel", layout.ep_size},
                                         {"state_bytes_rank0", state_bytes},
                                         {"largest_tensor_bytes", largest_tensor_bytes},
                                         {"save_rank0", save.json()},
                                         {"load_rank0", load.json()},
                                         {"save_peak_above_start_bytes_per_rank", save_peaks},
                                         {"load_peak_above_start_bytes_per_rank", load_peaks}};
  bench::emit_result(o.out, result);
  return 0;
}

}  // namespace

CLI::App* add_checkpoint_bench(CLI::App& bench, CheckpointBenchOptions& o) {
  CLI::App* sub = bench.add_subcommand(
      "checkpoint", "Peak memory of saving and loading a checkpoint of a config's model");
  bench::add_config_options(*sub, o.config_path, o.overrides, true);
  sub->add_option("--run-dir", o.run_dir, "The benchmark's scratch folder (replaced each time)")
      ->capture_default_str();
  bench::add_out_option(*sub, o.out);
  return sub;
}

int run_checkpoint_bench(const CheckpointBenchOptions& o) {
  return bench::run_under_mpi([&] { return checkpoint_bench(o); });
}

}  // namespace triage
