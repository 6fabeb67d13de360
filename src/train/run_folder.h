// The run folder (--out): one run's metrics.jsonl, summary.json, run.json, checkpoints/ and
// ranks/ (the watchdog's status files). A fresh run never writes into a folder that holds
// another run's results: it is refused with what to do instead, unless --overwrite asks
// for the old run to be removed. run.json names the run (a random id) so that checkpoint
// pruning only ever touches this run's own checkpoints.
#pragma once

#include <string>
#include <vector>

namespace triage {

// What in `out` shows an earlier run: metrics.jsonl, summary.json, checkpoints/latest,
// checkpoints/step-* (as paths relative to out). Empty for a new or empty folder.
std::vector<std::string> earlier_run_files(const std::string& out);

// Throws Error when `out` holds an earlier run and neither resume nor overwrite is set.
void refuse_to_clobber(const std::string& out, bool resume, bool overwrite);

// Removes an earlier run's files from `out` (for --overwrite); leaves other files alone.
void remove_earlier_run(const std::string& out);

// The run id from out/run.json; for a fresh run (or a folder from before run ids) a new
// one is made and written there.
std::string open_run_id(const std::string& out, bool resume);

}  // namespace triage
