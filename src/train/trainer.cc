// The training loop. One Trainer per rank; every collective is issued by every rank in
// the same order (forward exchanges, gradient buckets, statistics, checkpoints).
#include "train/trainer.h"

#include <ATen/Parallel.h>
#include <ATen/autocast_mode.h>
#include <c10/core/GradMode.h>
#include <torch/optim/adamw.h>

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>

#include "checkpoint/checkpoint.h"
#include "common/bytes_text.h"
#include "common/check.h"
#include "common/error.h"
#include "data/dataset.h"
#include "data/tokenizer_files.h"
#include "model/transformer.h"
#include "moe/expert_choice.h"
#include "moe/host_exchange.h"
#include "moe/routing_override.h"
#include "parallel/agreement.h"
#include "parallel/fault_injection.h"
#include "parallel/phase_clock.h"
#include "parallel/placement.h"
#include "parallel/process_groups.h"
#include "parallel/watchdog.h"
#include "train/best_model.h"
#include "train/evaluation.h"
#include "train/grad_sync.h"
#include "train/lr_schedule.h"
#include "train/metrics.h"
#include "train/objective.h"
#include "train/optimizer.h"
#include "train/preemption.h"
#include "train/run_folder.h"
#include "train/run_report.h"
#include "train/sharded_optimizer.h"
#include "train/step_decisions.h"
#include "train/step_metrics.h"
#include "train/step_totals.h"

namespace triage {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

class Trainer {
 public:
  Trainer(const Config& config, const TrainOptions& options);
  ~Trainer() { watchdog::stop(); }
  TrainResult run();

 private:
  StepMetrics train_step();
  EvalMetrics evaluate();
  void log_start() const;
  void log_summary(const std::vector<StepMetrics>& history, const EvalMetrics* baseline,
                   const EvalMetrics* last_eval, double seconds, bool stopped_early = false);
  std::string save();                           // the checkpoint's folder
  std::string ending_line(RunGoes goes) const;  // what rank 0 says when the run stops early
  std::string optimizer_line() const;           // the banner's optimizer: line
  // train.overlap_grad_sync on a CPU. On a GPU autograd runs backward (and so the hooks
  // that start buckets) on its own device thread, while the communicators and the
  // watchdog assume the main thread: there the sync starts after backward until that
  // path has run on a GPU.
  bool sync_during_backward() const {
    return config_.train.overlap_grad_sync && config_.train.device == DeviceKind::kCpu;
  }
  bool is_root() const { return groups_.layout.world_rank == 0; }
  Batch on_device(Batch b) const;
  ModelOutput forward(const Batch& b, bool training);

  Config config_;
  TrainOptions options_;
  ProcessGroups groups_;
  Dataset dataset_;
  std::unique_ptr<Transformer> model_;
  ParameterList parameters_;
  std::unique_ptr<GradientSync> sync_;
  std::unique_ptr<torch::optim::AdamW> optimizer_;  // unsharded; or:
  std::unique_ptr<ShardedAdamW> sharded_;           // train.shard_optimizer
  std::unique_ptr<ExampleOrder> order_;
  std::unique_ptr<MetricsFile> metrics_;
  std::vector<RankPlacement> placements_;  // every rank's on rank 0; this rank's first
  std::string exchange_;                   // how moe.exchange resolved on the EP group
  at::Device device_ = at::kCPU;
  int64_t step_ = 0;          // optimizer steps completed
  int64_t samples_seen_ = 0;  // position in order_
  bool lm_ = true, classify_ = false;
  std::string run_id_;  // this run's id (rank 0), for checkpoint pruning
  BestModel best_{KeepBest::kNone, 0};
  int preempt_signal_ = 0;  // agreed at a step's end: this rank's signal, or -1 for another rank's
};

Trainer::Trainer(const Config& config, const TrainOptions& options)
    : config_(config), options_(options) {
  // The GPU first (from the node-local rank), then NCCL communicators on it.
  const bool cuda = config.train.device == DeviceKind::kCuda;
  // Start-up is watched like a step (the command started the watchdog): each phase is
  // labelled, so a stuck mount or bootstrap ends the job naming where it stuck.
  int world_rank = 0, world_size = 1;
  TRIAGE_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &world_rank));
  TRIAGE_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &world_size));
  watchdog::start(config.train.collective_timeout_s, world_rank, world_size);  // the run's timeout
  std::optional<watchdog::Scope> phase;
  phase.emplace("start-up: placing ranks");
  placements_ = place_ranks(config.parallel.intra_op_threads, cuda);
  const int gpu = placements_.front().gpu;  // this rank's own (rank 0 holds all, its own first)
  device_ = cuda ? at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(gpu)) : at::Device(at::kCPU);
  // group_layout's checks fail on every rank alike, before any split: safe inside agree().
  phase.emplace("start-up: creating communicators");
  agree([&] {
    if (cuda && !options.gpu_communicator)
      throw Error("train.device = cuda: this program has no GPU communicator backend");
    groups_ = make_process_groups(config, cuda ? options.gpu_communicator : nullptr);
  });
  const int world = groups_.layout.world_size;
  lm_ = config.train.loss != Loss::kClassify;
  classify_ = config.train.loss != Loss::kLm;

  // Local checks and reads that every rank makes alike: a failure is reported once.
  phase.emplace("start-up: loading data");
  agree([&] {
    if (config.train.batch_size % world != 0)
      throw Error("train.batch_size = " + std::to_string(config.train.batch_size) +
                  ": expected a multiple of the number of ranks (" + std::to_string(world) + ")");
    refuse_to_clobber(options.out_dir, options.resume, options.overwrite);
    if (config.moe.router == RouterKind::kExpertChoice) {  // fixed now, recorded in checkpoints
      int64_t& slices = config_.moe.expert_choice_slices;
      if (slices == 0) slices = world / config.parallel.expert;
      expert_choice_slices(slices, world, config.parallel.expert);  // throws where it cannot be
      if (config.train.batch_size % slices != 0)
        throw Error("moe.expert_choice_slices = " + std::to_string(slices) +
                    ": expected a divisor of train.batch_size (" +
                    std::to_string(config.train.batch_size) +
                    "), so each slice is whole sequences");
    }
    RoutingOverride& routing = config_.moe.routing_override;
    if (routing.kind == RoutingOverride::Kind::kReplay)  // read once; every MoE layer shares it
      routing.replay_loads = std::make_shared<const std::vector<std::vector<double>>>(
          load_replay_loads(routing.run_dir, config.moe.num_experts));
    dataset_ = load_dataset(config.data, uint64_t(config.train.seed));
    if (dataset_.vocab_size > config.model.vocab_size)
      throw Error("model.vocab_size = " + std::to_string(config.model.vocab_size) +
                  ": expected at least the vocabulary of " + config.data.path + " (" +
                  std::to_string(dataset_.vocab_size) + " ids)");
    fault::inject(fault::Point::kStartup, groups_.layout.world_rank, 0);
    const int64_t labels = int64_t(dataset_.label_names.size());
    const std::string source = config.data.path.empty() ? "the data" : config.data.path;
    int64_t& classes = config_.model.num_classes;
    if (classes == kAutoClasses) {
      classes = classify_ ? labels : 0;
      if (classify_ && labels == 0)
        throw Error("model.num_classes = auto: no labels found in " + source +
                    "; expected labelled sequences (one file per family, or data.label_pattern)");
    } else if (classify_ && labels > classes) {
      throw Error("model.num_classes = " + std::to_string(classes) + ": expected at least the " +
                  std::to_string(labels) + " labels found in " + source + " (or auto)");
    }
  });
  // From here on config_, whose model.num_classes is resolved, is the run's config.

  phase.emplace("start-up: finding the EP group's hosts");
  exchange_ =
      choose_exchange(config_.moe.exchange, *groups_.ep, config.train.device == DeviceKind::kCuda)
          .why;
  {  // Node-limited routing bounds the stated hosts; say so when the live ones differ.
    const std::vector<int>& hosts = groups_.ep->hosts();
    const int64_t live_per_host =
        int64_t(hosts.size()) / (*std::max_element(hosts.begin(), hosts.end()) + 1);
    const int64_t stated = std::min(config_.parallel.ranks_per_host, config_.parallel.expert);
    if (stated > 0 && stated != live_per_host && uneven_hosts(hosts).empty())
      exchange_ += "; warning: parallel.ranks_per_host is " +
                   std::to_string(config_.parallel.ranks_per_host) + " but this EP group runs " +
                   std::to_string(live_per_host) +
                   " rank(s) per host, so moe.num_groups: hosts groups the stated hosts";
  }
  phase.emplace("start-up: building the model");
  const at::ScalarType dtype = config.train.dtype == DType::kFloat64 ? at::kDouble : at::kFloat;
  model_ = std::make_unique<Transformer>(config_, dtype, groups_.ep.get(), groups_.world.get());
  model_->to(device_);
  parameters_ = model_->parameters();
  for (MoeLayer* layer : model_->moe_layers())
    layer->set_recompute_experts(config.train.recompute == Recompute::kExperts);
  GradSyncOptions sync_options;
  sync_options.shard = config.train.shard_optimizer;
  sync_options.bucket_bytes =
      std::max<int64_t>(1, int64_t(config.train.grad_bucket_mb * (1 << 20)));
  sync_options.bf16_wire = config.train.grad_reduce_dtype == GradReduceDtype::kBf16;
  sync_ =
      std::make_unique<GradientSync>(parameters_, *groups_.world, *groups_.expert_dp, sync_options);
  if (config.train.shard_optimizer)
    sharded_ =
        std::make_unique<ShardedAdamW>(parameters_, *sync_, config.train,
                                       first_local_expert(groups_.layout, config.moe.num_experts));
  else
    optimizer_ = make_optimizer(parameters_, config.train);
  order_ =
      std::make_unique<ExampleOrder>(int64_t(dataset_.train.size()), uint64_t(config.train.seed));

  phase.emplace("start-up: preparing the run folder");
  const std::string checkpoints = options.out_dir + "/checkpoints";
  if (is_root()) {
    if (options.overwrite && !options.resume) remove_earlier_run(options.out_dir);
    std::filesystem::create_directories(checkpoints);
    run_id_ = open_run_id(options.out_dir, options.resume);
  }
  groups_.world->barrier();
  // The run keeps the tokenizer its ids mean (an imported model's, or the data's), and
  // refuses data made by another.
  const std::string run_tokenizer = options.out_dir + "/tokenizer.json";
  std::optional<std::string> data_tokenizer;
  bool keep_data_tokenizer = false;
  agree([&] {
    data_tokenizer = data_tokenizer_json(config_.data);
    const std::optional<std::string> run_json = read_file_if_present(run_tokenizer);
    if (run_json && data_tokenizer)
      check_same_tokenizer(*data_tokenizer, *run_json, config_.data, run_tokenizer);
    keep_data_tokenizer = !run_json && data_tokenizer;
  });
  agree([&] {  // rank 0 writes it; a failure ends every rank
    if (!is_root() || !keep_data_tokenizer) return;
    std::ofstream file(run_tokenizer, std::ios::binary);
    file << *data_tokenizer;
    if (!file.flush()) throw Error(run_tokenizer + ": cannot write the run's tokenizer");
  });
  watchdog::keep_status_files(options.out_dir + "/ranks");
  best_ = BestModel(config.train.keep_best, config.train.early_stop_patience);
  if (options.resume) {
    if (const auto best = read_best_checkpoint(checkpoints, *groups_.world))  // rank 0's read
      best_.restore(best->step, best->value);
    TrainingState state{parameters_, optimizer_.get(), model_->moe_layers()};
    state.sharded = sharded_ ? &sharded_->state() : nullptr;
    load_checkpoint(checkpoints, config_, groups_, state);
    step_ = state.step;
    samples_seen_ = state.samples_seen;
  }
  if (is_root())
    metrics_ = std::make_unique<MetricsFile>(options.out_dir + "/metrics.jsonl",
                                             options.resume ? step_ : -1);
}

Batch Trainer::on_device(Batch b) const {
  if (device_.is_cpu()) return b;
  for (at::Tensor* t : {&b.tokens_BL, &b.real_BL, &b.targets_BL, &b.target_BL, &b.labels_B})
    *t = t->to(device_);
  return b;
}

// train.precision bf16: the model's matmuls under CUDA autocast in bfloat16 (the router
// opts out and stays float32; losses are taken in float32 from the logits).
ModelOutput Trainer::forward(const Batch& b, bool training) {
  const bool autocast = config_.train.precision == Precision::kBf16;
  if (autocast) {
    at::autocast::set_autocast_dtype(at::kCUDA, at::kBFloat16);
    at::autocast::set_autocast_enabled(at::kCUDA, true);
  }
  // Rank r holds slice r of every global batch; its first token's global index keeps
  // routing overrides independent of the layout.
  const int64_t first_token = int64_t(groups_.layout.world_rank) * b.tokens_BL.numel();
  ModelOutput out = model_->forward(b.tokens_BL, b.real_BL, training, first_token);
  if (autocast) {
    at::autocast::set_autocast_enabled(at::kCUDA, false);
    at::autocast::clear_cache();
  }
  return out;
}

StepMetrics Trainer::train_step() {
  const auto start = Clock::now();
  fault::inject(fault::Point::kStepStart, groups_.layout.world_rank, step_ + 1);
  const std::string step_label = "step " + std::to_string(step_ + 1);
  const GroupLayout& g = groups_.layout;
  const int64_t batch = config_.train.batch_size, micro_batches = config_.train.grad_accum_steps;
  const int64_t slice = batch / g.world_size, length = config_.data.seq_len;

  // The global micro-batches of this step, and the counts that normalise the loss sums:
  // counted from every row's length and label, read (for a token file) only for this rank's.
  std::vector<std::vector<int64_t>> rows(micro_batches);
  double targets = 0, labelled = 0, tokens = 0;
  for (int64_t m = 0; m < micro_batches; ++m)
    for (int64_t j = 0; j < batch; ++j) {
      const int64_t i = order_->at(samples_seen_ + m * batch + j);
      rows[m].push_back(i);
      const int64_t length_i = dataset_.train.length(i);
      tokens += double(length_i);
      targets += double(std::max<int64_t>(1, length_i) - 1);
      labelled += dataset_.train.label(i) >= 0 ? 1 : 0;
    }
  samples_seen_ += micro_batches * batch;

  StepMetrics m;
  m.step = step_ + 1;
  m.steps = config_.train.steps;
  m.lr = learning_rate(step_, config_.train.steps, config_.train.warmup_steps, config_.train.lr,
                       config_.train.min_lr_ratio);
  if (sharded_)
    sharded_->set_learning_rate(m.lr);
  else
    set_learning_rate(*optimizer_, m.lr);
  sync_->zero_gradients();  // in place: backward accumulates into the sync's buckets

  const std::vector<MoeLayer*> moe_layers = model_->moe_layers();
  const int64_t experts = config_.moe.num_experts, ep_size = g.ep_size;
  StepTotals totals(int64_t(moe_layers.size()), experts, ep_size, g.world_rank, g.world_size);
  // The loss sums stay on the device until the step is done: reading them per micro-batch
  // would stall a GPU between forward and backward.
  at::Tensor loss_sums = at::zeros({4}, at::TensorOptions().dtype(at::kDouble).device(device_));
  const double world = double(g.world_size);
  for (int64_t micro = 0; micro < micro_batches; ++micro) {
    const std::vector<int64_t> mine(rows[micro].begin() + g.world_rank * slice,
                                    rows[micro].begin() + (g.world_rank + 1) * slice);
    watchdog::Scope scope(step_label + ", micro-batch " + std::to_string(micro + 1) + "/" +
                          std::to_string(micro_batches));
    model_->set_draw_clock(step_, micro);
    phase_clock::enter(Phase::kCompute);  // the model outside its MoE layers' own phases
    Batch b = on_device(make_batch(dataset_.train, mine, length));
    ModelOutput out = forward(b, /*training=*/true);
    at::Tensor objective = (out.balance_loss + out.z_loss) / double(micro_batches);
    if (lm_) {
      at::Tensor lm = token_cross_entropy_sum(out.lm_logits_BLV, b.targets_BL, b.target_BL);
      objective = objective + lm * (world / std::max(1.0, targets));
      loss_sums[0] += lm.detach().to(at::kDouble);
    }
    if (classify_) {
      at::Tensor cls = sequence_cross_entropy_sum(out.class_logits_BC, b.labels_B);
      objective = objective + cls * (world / std::max(1.0, labelled));
      loss_sums[1] += cls.detach().to(at::kDouble);
    }
    phase_clock::enter(Phase::kComputeBwd);
    if (micro + 1 == micro_batches && sync_during_backward()) sync_->start_during_backward();
    objective.backward();
    loss_sums[2] += out.balance_loss.detach().to(at::kDouble);
    loss_sums[3] += out.z_loss.detach().to(at::kDouble);
    totals.add(out.moe_stats);
  }
  const at::Tensor host_sums = loss_sums.to(at::kCPU);  // device-to-host sync, once per step
  const double* loss = host_sums.data_ptr<double>();
  totals.lm_loss_sum = loss[0];
  totals.class_loss_sum = loss[1];
  totals.balance_loss = loss[2];
  totals.z_loss = loss[3];
  watchdog::Scope scope(step_label);
  phase_clock::enter(Phase::kGradientSync);
  phase_clock::wait_for_peers(*groups_.world);
  sync_->synchronize();
  phase_clock::enter(Phase::kGradientClip);
  m.grad_norm = sharded_ ? sharded_->clip_gradients(*groups_.world, config_.train.grad_clip)
                         : clip_gradients(parameters_, *groups_.ep, config_.train.grad_clip);
  phase_clock::enter(Phase::kOptimizer);
  if (sharded_)
    sharded_->step();
  else
    optimizer_->step();
  ++step_;
  phase_clock::enter(Phase::kStatistics);

  totals.preemption_votes = double(preemption::requested());
  {
    watchdog::Scope stats("statistics all-reduce");
    totals.sum_over(*groups_.world);
  }
  // The votes sum signal numbers, so only this rank's own signal can be named.
  if (totals.preemption_votes > 0)
    preempt_signal_ = preemption::requested() ? preemption::requested() : -1;
  const StepCounts counts{targets, labelled, lm_, classify_, g.world_size, micro_batches};
  fill_step_metrics(totals, counts, m);
  for (size_t l = 0; l < moe_layers.size(); ++l) {
    if (config_.moe.expert_bias)
      moe_layers[l]->update_expert_bias(at::tensor(m.tokens_per_expert[l], at::kLong));
    for (size_t p = 0; p < m.bound_dropped_per_rank[l].size(); ++p)
      if (m.bound_dropped_per_rank[l][p] > 0 && is_root())
        std::cerr << "warning: step " << m.step << ", MoE layer " << l << ": "
                  << m.bound_dropped_per_rank[l][p] << " assignments to EP rank " << p
                  << " dropped at moe.max_receive_factor = " << config_.moe.max_receive_factor
                  << std::endl;
  }
  phase_clock::lap();
  const double seconds = seconds_since(start);
  m.step_ms = 1000.0 * seconds;
  m.tokens = int64_t(tokens);
  m.tokens_per_s = tokens / std::max(1e-9, seconds);
  return m;
}

EvalMetrics Trainer::evaluate() {
  const EvalSetup setup{&dataset_.test, int64_t(dataset_.label_names.size()),
                        int64_t(model_->moe_layers().size()), lm_, classify_};
  return triage::evaluate([&](Batch b) { return on_device(std::move(b)); },
                          [&](const Batch& b) { return forward(b, /*training=*/false); }, setup,
                          config_, groups_.layout, *groups_.world, step_);
}

std::string Trainer::save() {
  TrainingState state{parameters_, optimizer_.get(), model_->moe_layers(), step_, samples_seen_};
  state.sharded = sharded_ ? &sharded_->state() : nullptr;
  const std::string folder = save_checkpoint(options_.out_dir + "/checkpoints", config_, groups_,
                                             state, config_.train.keep_checkpoints, run_id_);
  if (is_root()) std::cout << "checkpoint: " << folder << std::endl;
  return folder;
}

void Trainer::log_start() const {
  if (!is_root()) return;
  const int64_t moe_layers = int64_t(model_->moe_layers().size());
  const RunStart run{config_,       groups_.layout, environment_line(), placements_,
                     parameters_,   moe_layers,     dataset_,           step_,
                     samples_seen_, exchange_,      optimizer_line()};
  std::cout << start_banner(run) << std::flush;
}

void Trainer::log_summary(const std::vector<StepMetrics>& history, const EvalMetrics* baseline,
                          const EvalMetrics* last_eval, double seconds, bool stopped_early) {
  // Every rank's peak resident set, to the root (collective: before anyone returns).
  at::Tensor peaks = at::zeros({groups_.layout.world_size}, at::kDouble);
  struct rusage usage {};
  getrusage(RUSAGE_SELF, &usage);
  peaks[groups_.layout.world_rank] = double(usage.ru_maxrss) * 1024.0;  // Linux: kilobytes
  groups_.world->allreduce_sum_(peaks);
  if (!is_root() || history.empty()) return;
  RunEnd run{step_, history, baseline, last_eval, dataset_.label_names, seconds};
  run.peak_rss_bytes = peaks.max().item<double>();
  run.stopped_early = stopped_early;
  if (best_.best_step())
    run.best = BestSummary{
        name_of(best_.metric()), *best_.best_step(), best_.best_value(),
        options_.out_dir + "/checkpoints/" + checkpoint_folder_name(*best_.best_step())};
  std::ofstream(options_.out_dir + "/summary.json") << summary_json(run).dump(2) << "\n";
  std::cout << summary_text(run) << "\nmetrics: " << options_.out_dir
            << "/metrics.jsonl, summary: " << options_.out_dir << "/summary.json" << std::endl;
}

std::string Trainer::optimizer_line() const {
  int64_t unsharded = 0;  // two AdamW moments per parameter element this rank holds
  for (const NamedParameter& p : parameters_)
    unsharded += 2 * p.tensor.numel() * int64_t(p.tensor.element_size());
  auto mib = [](int64_t bytes) { return bytes_text(double(bytes)); };
  const TrainConfig& t = config_.train;
  std::string line =
      sharded_
          ? "AdamW sharded (ZeRO-1: replicated over " + std::to_string(groups_.layout.world_size) +
                " ranks, experts over " + std::to_string(groups_.layout.dp_size) + "), moments " +
                mib(sharded_->state_bytes()) + " per rank (unsharded " + mib(unsharded) + ")"
          : "AdamW, moments " + mib(unsharded) + " per rank";
  return line + "; gradients sync in " + std::to_string(sync_->bucket_count()) + " bucket(s) " +
         (sync_during_backward() ? "during" : "after") + " backward" +
         (t.overlap_grad_sync && !sync_during_backward() ? " (on GPUs after it: not yet run on one)"
                                                         : "") +
         ", as " + name_of(t.grad_reduce_dtype);
}

std::string Trainer::ending_line(RunGoes goes) const {
  const std::string after = " after step " + std::to_string(step_);
  switch (goes) {
    case RunGoes::kStoppedEarly:
      return "stopped early" + after + ": " + std::to_string(best_.evaluations_without_gain()) +
             " evaluations without improving " + name_of(best_.metric());
    case RunGoes::kStopped:
      return "stopped" + after + " as asked; continue with --resume";
    case RunGoes::kPreempted:
      return std::string("preempted by ") +
             (preempt_signal_ > 0 ? strsignal(preempt_signal_) : "a signal to another rank") +
             ": stopped" + after + " with a checkpoint; continue with --resume";
    case RunGoes::kOn:
    case RunGoes::kFinished:
      break;
  }
  return "";
}

TrainResult Trainer::run() {
  if (step_ >= config_.train.steps) {  // resumed after its last step (preempted at the end)
    if (is_root())
      std::cout << "the run in " << options_.out_dir << " already finished (step " << step_
                << " of " << config_.train.steps << "); nothing to do" << std::endl;
    return TrainResult::kFinished;
  }
  log_start();
  const auto start = Clock::now();
  std::vector<StepMetrics> history;
  std::unique_ptr<EvalMetrics> last_eval;
  const int64_t steps = config_.train.steps;
  auto run_eval = [&] {
    last_eval = std::make_unique<EvalMetrics>(evaluate());
    if (is_root()) {
      metrics_->append(to_json(*last_eval, dataset_.label_names));
      std::cout << eval_line(*last_eval) << std::endl;
    }
  };
  // A baseline before any update: the specialisation an untrained router shows by chance.
  std::unique_ptr<EvalMetrics> baseline;
  if (step_ == 0 && config_.train.eval_every > 0 && !dataset_.test.empty()) {
    run_eval();
    baseline = std::make_unique<EvalMetrics>(*last_eval);
  }
  while (step_ < steps) {
    StepMetrics m = train_step();
    history.push_back(m);
    if (is_root()) {
      metrics_->append(to_json(m));
      if (m.step % config_.train.log_every == 0 || m.step == steps) {
        const double per_step = seconds_since(start) / double(history.size());
        std::cout << step_line(m, per_step * double(steps - m.step)) << std::endl;
      }
    }
    const bool eval_now = evaluates_after(step_, config_.train, !dataset_.test.empty());
    if (eval_now) run_eval();
    const bool improved = eval_now && best_.record(*last_eval);
    const AfterStep next = after_step(step_, config_.train, options_.stop_after, improved,
                                      eval_now && best_.should_stop(), preempt_signal_ != 0);
    if (next.save) {
      const std::string folder = save();
      if (improved && is_root()) {
        mark_best_checkpoint(options_.out_dir + "/checkpoints", folder, best_.best_value());
        std::cout << "best so far: " << name_of(best_.metric()) << " " << best_.best_value()
                  << " at step " << step_ << std::endl;
      }
    }
    if (next.goes != RunGoes::kOn && next.goes != RunGoes::kFinished && is_root())
      std::cout << ending_line(next.goes) << std::endl;
    if (next.goes == RunGoes::kStoppedEarly) {
      log_summary(history, baseline.get(), last_eval.get(), seconds_since(start), true);
      return TrainResult::kFinished;
    }
    if (next.goes == RunGoes::kStopped) return TrainResult::kStopped;
    if (next.goes == RunGoes::kPreempted) return TrainResult::kPreempted;
  }
  log_summary(history, baseline.get(), last_eval.get(), seconds_since(start));
  return TrainResult::kFinished;
}

}  // namespace

TrainResult train(const Config& config, const TrainOptions& options) {
  Trainer trainer(config, options);
  return trainer.run();
}

}  // namespace triage
