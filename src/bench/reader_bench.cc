// The reader's throughput; see the header.
#include "bench/reader_bench.h"

#include <fcntl.h>
#include <mpi.h>
#include <unistd.h>

#include <chrono>
#include <iostream>
#include <nlohmann/json.hpp>

#include "bench/harness.h"
#include "bench/options.h"
#include "bench/timing.h"
#include "common/check.h"
#include "common/error.h"
#include "config/config.h"
#include "data/dataset.h"
#include "parallel/agreement.h"

namespace triage {
namespace {

// Asks the kernel to drop a file's cached pages (a hint it honours for clean pages), so
// the next reads come from the disk, as on a node that has not read the corpus yet.
void drop_cached_pages(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  ::close(fd);
}

int reader_bench(const ReaderBenchOptions& o) {
  int rank = 0, ranks = 1;
  TRIAGE_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
  TRIAGE_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &ranks));
  Config config;
  Dataset data;
  agree([&] {
    if (o.steps < 1) throw Error("--steps " + std::to_string(o.steps) + ": expected at least 1");
    config = load_config(o.config_path, o.overrides);
    if (config.train.batch_size % ranks != 0)
      throw Error("train.batch_size = " + std::to_string(config.train.batch_size) +
                  ": expected a multiple of the number of ranks (" + std::to_string(ranks) + ")");
    data = load_dataset(config.data, uint64_t(config.train.seed));
  });
  const int64_t batch = config.train.batch_size, slice = batch / ranks;
  const int64_t micro_batches = config.train.grad_accum_steps, length = config.data.seq_len;
  if (o.cold && !config.data.path.empty()) drop_cached_pages(config.data.path);
  TRIAGE_MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD));
  ExampleOrder order(data.train.size(), uint64_t(config.train.seed));
  int64_t position = 0, tokens = 0;
  const auto start = std::chrono::steady_clock::now();
  for (int64_t step = 0; step < o.steps; ++step)
    for (int64_t micro = 0; micro < micro_batches; ++micro) {
      std::vector<int64_t> mine;
      for (int64_t j = rank * slice; j < (rank + 1) * slice; ++j)
        mine.push_back(order.at(position + j));
      position += batch;
      const Batch b = make_batch(data.train, mine, length);
      tokens += b.real_BL.sum().item<int64_t>();
    }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double slowest = bench::slowest_rank(seconds);
  const std::vector<double> per_rank = bench::gather_from_ranks(double(tokens) / seconds);
  if (rank != 0) return 0;
  const double tokens_per_s = double(tokens) / slowest;
  std::cerr << "# reader: " << o.config_path << ", " << ranks << " rank(s), " << o.steps
            << " steps of " << micro_batches << " x " << slice << " sequences of " << length
            << " per rank" << (o.cold ? ", file pages dropped first" : ", page cache warm") << ": "
            << int64_t(tokens_per_s) << " tokens/s per rank (slowest), "
            << 1e3 * slowest / double(o.steps) << " ms per step\n";
  const nlohmann::ordered_json result = {{"benchmark", "reader"},
                                         {"config", o.config_path},
                                         {"overrides", o.overrides},
                                         {"data", data.source},
                                         {"ranks", ranks},
                                         {"steps", o.steps},
                                         {"sequences_per_step_per_rank", micro_batches * slice},
                                         {"seq_len", length},
                                         {"cold", o.cold},
                                         {"seconds_slowest_rank", slowest},
                                         {"ms_per_step", 1e3 * slowest / double(o.steps)},
                                         {"tokens_per_s_per_rank", tokens_per_s},
                                         {"tokens_per_s_each_rank", per_rank}};
  bench::emit_result(o.out, result);
  return 0;
}

}  // namespace

CLI::App* add_reader_bench(CLI::App& bench, ReaderBenchOptions& o) {
  CLI::App* sub = bench.add_subcommand(
      "reader", "Tokens per second each rank reads its share of the training data at");
  bench::add_config_options(*sub, o.config_path, o.overrides, true);
  sub->add_option("--steps", o.steps, "Training steps' worth of batches to read, timed")
      ->capture_default_str();
  sub->add_flag("--cold", o.cold, "Drop the data file's cached pages first (read from disk)");
  bench::add_out_option(*sub, o.out);
  return sub;
}

int run_reader_bench(const ReaderBenchOptions& o) {
  return bench::run_under_mpi([&] { return reader_bench(o); });
}

}  // namespace triage
