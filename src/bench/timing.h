// How every `triage bench` times: wall-clock seconds, robust summaries of repeated timings
// (median and spread, never the mean of a noisy machine), one number gathered from every
// rank, and contenders run alternately so that machine drift hits them alike.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace triage {
class Communicator;
}

namespace triage::bench {

double now_seconds();

// q in [0, 1], linear between order statistics; median = quantile(values, 0.5).
double quantile(std::vector<double> values, double q);
double median(const std::vector<double>& values);

// {"median_s", "p10_s", "p90_s", "min_s", "max_s", "seconds"}.
nlohmann::ordered_json summary(const std::vector<double>& seconds);

// Every rank's value, in rank order, on every rank (MPI_COMM_WORLD).
std::vector<double> gather_from_ranks(double value);
double slowest_rank(double seconds);  // the largest value over the ranks

// One thing a benchmark times, and what it measured: per timed repetition the slowest
// rank's seconds and which rank that was (this process's own seconds without ranks).
struct Contender {
  std::string name;
  std::function<void()> run;  // the timed work; it returns once the work is done
  std::vector<double> slowest_s;
  std::vector<int> slowest_rank;
};

// One repetition: every contender once, the first one rotating with `repetition` so that
// none always runs on a warmer or a quieter machine. Before each, `prepare` (untimed) and,
// with `world`, a barrier, so every rank starts together; with `world` the time kept is
// the slowest rank's, without it this process's. Nothing is kept when `timed` is false.
void run_repetition(std::vector<Contender>& contenders, int64_t repetition, bool timed,
                    Communicator* world, const std::function<void()>& prepare = {});

// "\r[bench WHAT] rep I/N" on stderr (a newline after the last), so long runs show progress.
void show_progress(const std::string& what, int64_t done, int64_t total);

}  // namespace triage::bench
