// `triage config FILE [--set section.key=value]... [--json | --get KEY]`: load, validate, print.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <iomanip>
#include <iostream>
#include <memory>

#include "apps/commands.h"
#include "bench/memory_model.h"
#include "common/error.h"
#include "config/config.h"

namespace triage {

namespace {

struct ConfigOptions {
  std::string path;
  std::vector<std::string> overrides;
  bool json = false;
  std::string get;       // print one value
  int64_t ranks = 0;     // the layout the memory estimate is for; 0: parallel.expert
  double device_gb = 0;  // check the estimate against this much device memory
};

void print_table(const std::vector<ConfigRow>& rows) {
  size_t key_width = 3, value_width = 5;
  for (const auto& row : rows) {
    key_width = std::max(key_width, row.key.size());
    value_width = std::max(value_width, row.value.size());
  }
  auto line = [&](const std::string& key, const std::string& value, const std::string& origin) {
    std::cout << std::left << std::setw(int(key_width)) << key << "  "
              << std::setw(int(value_width)) << value << "  " << origin << "\n";
  };
  line("key", "value", "from");
  line(std::string(key_width, '-'), std::string(value_width, '-'), "----");
  std::string section;
  for (const auto& row : rows) {
    std::string row_section = row.key.substr(0, row.key.find('.'));
    if (!section.empty() && row_section != section) std::cout << "\n";
    section = row_section;
    line(row.key, row.value, row.origin);
  }
}

void print_json(const std::vector<ConfigRow>& rows) {
  nlohmann::ordered_json out;
  for (const auto& row : rows) {
    auto dot = row.key.find('.');
    // Values are printed back through YAML's own scalar rules: numbers and booleans stay
    // typed in JSON, everything else is a string.
    nlohmann::ordered_json value = nlohmann::ordered_json::parse(row.value, nullptr, false);
    if (value.is_discarded() || value.is_object() || value.is_array()) value = row.value;
    if (row.value == "\"\"") value = "";
    out[row.key.substr(0, dot)][row.key.substr(dot + 1)] = value;
  }
  std::cout << out.dump(2) << "\n";
}

// The per-rank memory estimate (bench/memory_model.h) at `ranks` (EP as the config says).
void print_memory(const Config& config, int64_t ranks, double device_gb) {
  if (ranks == 0) ranks = config.parallel.expert;
  if (ranks % config.parallel.expert != 0)
    throw Error("--ranks " + std::to_string(ranks) + ": expected a multiple of parallel.expert (" +
                std::to_string(config.parallel.expert) + ")");
  if (config.train.batch_size % ranks != 0)
    throw Error("--ranks " + std::to_string(ranks) + ": expected a divisor of train.batch_size (" +
                std::to_string(config.train.batch_size) + ")");
  const MemoryEstimate m =
      estimate_memory(config, {ranks, config.parallel.expert, default_runtime_bytes(config)});
  std::cout << "\n# memory per rank at " << ranks << " rank(s), EP " << config.parallel.expert
            << " (estimate: docs/training.md#memory-per-rank)\n";
  for (const auto& [what, value] : memory_rows(m, device_gb * double(1ull << 30)))
    std::cout << std::left << std::setw(24) << what << value << "\n";
}

}  // namespace

Command add_config_command(CLI::App& app) {
  auto options = std::make_shared<ConfigOptions>();
  CLI::App* sub = app.add_subcommand("config", "Load, validate and print a config");
  sub->add_option("file", options->path, "YAML config file")->required();
  sub->add_option("--set", options->overrides, "Override a key: section.key=value (repeatable)")
      ->allow_extra_args(false);
  sub->add_flag("--json", options->json, "Print the resolved config as JSON");
  sub->add_option("--get", options->get, "Print only this key's value (section.key), for scripts");
  sub->add_option("--ranks", options->ranks,
                  "Ranks (GPUs) of the layout the memory estimate is for (default: "
                  "parallel.expert, one EP group)")
      ->check(CLI::PositiveNumber);
  sub->add_option("--device-gb", options->device_gb,
                  "Device memory per rank (GB, as GiB) to check the memory estimate against")
      ->check(CLI::NonNegativeNumber);
  return {sub, [options] {
            Config config = load_config(options->path, options->overrides);
            auto rows = config_rows(config);
            if (!options->get.empty()) {
              for (const auto& row : rows)
                if (row.key == options->get) {
                  std::cout << row.value << "\n";
                  return 0;
                }
              throw Error("--get " + options->get +
                          ": unknown key; expected section.key, e.g. parallel.expert");
            }
            if (options->json) {
              print_json(rows);
            } else {
              std::cout << "# " << options->path << ": valid\n";
              print_table(rows);
              print_memory(config, options->ranks, options->device_gb);
            }
            return 0;
          }};
}

}  // namespace triage
