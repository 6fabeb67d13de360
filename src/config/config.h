// Typed configuration: one struct per YAML section, every field with its default and
// meaning. visit_fields() lists each section's keys once; loading, --set overrides,
// validation and the printed table are all driven from that single list.
#pragma once

#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "config/choices.h"

namespace triage {

// The vocabularies of the built-in data kinds (data/tokenizer, data/dataset): model.vocab_size
// must cover the kind's ids.
constexpr int64_t kAminoAcidVocabSize = 24;  // 20 residues + PAD, BOS, EOS, UNK
constexpr int64_t kByteVocabSize = 256;      // text: one id per byte

constexpr int64_t kAutoClasses = -1;   // model.num_classes: auto
constexpr int64_t kGroupsByHost = -1;  // moe.num_groups: hosts (resolved at load)

struct ModelConfig {
  int64_t vocab_size = 32;  // token ids in [0, vocab_size); 20 amino acids + specials fit
  int64_t d_model = 64;     // residual stream width
  int64_t n_layers = 2;     // transformer blocks
  int64_t n_heads = 4;      // attention heads; must divide d_model
  // Key/value heads (grouped-query attention, as Mixtral's 8 for 32 query heads): each
  // serves n_heads / n_kv_heads query heads; 0 means n_heads (plain multi-head attention).
  int64_t n_kv_heads = 0;
  // Width of one attention head; 0 means d_model / n_heads. Qwen3-MoE's heads are wider
  // than that (32 heads of 128 at width 2048), so its attention is wider than the residual.
  int64_t head_dim = 0;
  bool qkv_bias = false;           // biases on the query, key and value projections (Qwen2's)
  QkNorm qk_norm = QkNorm::kNone;  // none | head (Qwen3) | projection (OLMoE)
  int64_t d_ff = 128;              // hidden width of dense FFN blocks
  int64_t max_seq_len = 128;       // longest sequence the positions cover
  Positions positions = Positions::kRotary;  // rotary | learned
  double rope_theta = 10000.0;  // RoPE's base (LLaMA's 10000; Mixtral and Qwen use 1e6)
  double norm_eps = 1e-5;       // RMSNorm epsilon
  // The LM head is the embedding matrix transposed (one matrix, trained by both uses).
  bool tie_embeddings = false;
  // > 0 adds a mean-pooled sequence-classification head; auto (kAutoClasses): as many
  // classes as the data has labels when train.loss classifies, else none.
  int64_t num_classes = 0;
  // Training-only dropout (Megatron's attention and hidden dropout): on the attention
  // probabilities, and on each block's attention and FFN outputs before the residual add.
  // Masks are keyed by (seed, layer, step, micro-batch, global position) like router noise,
  // so every EP layout and a resumed run drop the same units.
  double attention_dropout = 0.0;
  double residual_dropout = 0.0;

  int64_t kv_heads() const { return n_kv_heads > 0 ? n_kv_heads : n_heads; }
  int64_t head_width() const { return head_dim > 0 ? head_dim : d_model / n_heads; }
};

// moe.routing_override, parsed once when it is set (from a file, --set, or by assigning
// its text form in code); the text is kept as written, for the config table and checkpoints.
struct RoutingOverride {
  enum class Kind { kNone, kBalanced, kHot, kZipf, kEmptyRank, kReplay };
  RoutingOverride() = default;
  RoutingOverride(const std::string& text);  // NOLINT: parses; throws Error("expected ...")
  RoutingOverride(const char* text) : RoutingOverride(std::string(text)) {}  // NOLINT

  std::string text = "none";
  Kind kind = Kind::kNone;
  std::string run_dir;  // replay: a run folder whose metrics.jsonl gives the loads
  // replay: per recorded training step, the first MoE layer's tokens per expert. Read once
  // per run (load_replay_loads, by the trainer or the first layer that needs it) and shared
  // by every layer's copy of the config.
  std::shared_ptr<const std::vector<std::vector<double>>> replay_loads;
  int64_t expert = 0;     // hot: the hot expert
  double fraction = 0.0;  // hot: share of assignments sent to it, in [0, 1]
  double exponent = 0.0;  // zipf: S > 0
  int64_t rank = 0;       // empty_rank: the EP rank whose experts get nothing
};
// Throws Error("expected ...") naming the accepted forms.
RoutingOverride parse_routing_override(const std::string& text);

struct MoeConfig {
  int64_t num_experts = 8;  // routed experts per MoE layer
  int64_t top_k = 2;        // experts chosen per token, 1 <= top_k <= num_experts
  int64_t d_expert = 128;   // hidden width of one expert
  ExpertType expert_type = ExpertType::kSwiglu;  // swiglu (3 matrices) | gelu (2 matrices)
  ScoreFunction score_function =
      ScoreFunction::kSoftmax;  // softmax over experts | sigmoid per expert
  bool renormalize = true;      // rescale the k chosen scores to sum to 1 before route_scale;
                                // never at top_k 1 (the gate would learn nothing from the task)
  double route_scale = 1.0;     // multiplies the gate weights after renormalisation
  // What the router scores and who chooses. routing_level sequence: every token of a
  // sequence goes to the experts its sequence's masked mean hidden state chose, with the
  // sequence's gate weights (balance and z-losses count sequences). router expert_choice:
  // each expert takes its top-C tokens (sequences) of each slice of the batch, C the
  // capacity at capacity_factor (1 when 0), weighted by their raw scores; a token may be
  // taken by 0..E experts. Both let a token's routing depend on later tokens, which a
  // causal LM loss could read: refused with an LM loss unless allow_lookahead is true.
  RoutingLevel routing_level = RoutingLevel::kToken;
  RouterKind router = RouterKind::kTokenChoice;
  bool allow_lookahead = false;
  // Expert choice's batch: the global batch cut into this many equal slices (in batch
  // order, so a slice is whole ranks' rows or a rank's rows a part each); every expert
  // takes its top C of each slice. One slice per EP group (each group's ranks hold a
  // slice) balances every copy of an expert exactly; fewer let one data-parallel copy take
  // up to (EP groups / slices) times its share. 0: one per EP group of the first launch,
  // fixed then and recorded in checkpoints (a resume at another layout keeps the model's
  // number). The one-rank reference cuts its batch alike, so every layout routes the same.
  int64_t expert_choice_slices = 0;
  // Training-only router noise: jitter (input *= U(1-jitter_noise, 1+jitter_noise)) or
  // shazeer (logits += N(0,1) * softplus(x @ noise_gate^T), a learned, input-dependent
  // spread). Each draw is a function of (seed, layer, step, micro-batch, global token),
  // so every EP layout and a resumed run draw the same noise.
  RouterNoise noise = RouterNoise::kNone;
  double jitter_noise = 0.0;  // eps of noise jitter (then > 0); 0 otherwise
  // Training-only dropout on each expert's output for each token it serves (keyed by the
  // global token, expert and unit), for small data as Switch's expert dropout; Switch drops
  // inside the expert's hidden layer, which would need token ids to travel with the rows.
  double expert_dropout = 0.0;
  // Capacity per expert = max(min_capacity, ceil(factor * tokens * top_k / num_experts));
  // factor 0 is dropless. Larger factors drop less but pad more on fixed-size backends.
  double capacity_factor = 0.0;
  double eval_capacity_factor = 0.0;  // the same, used when not training
  int64_t min_capacity = 4;
  // Over capacity: position drops the later tokens, score drops the lowest scores.
  DropPolicy drop_policy = DropPolicy::kPosition;
  double balance_loss_coef = 0.01;  // alpha of the Switch load-balancing loss
  // global: f_i and P_i summed over all ranks first, so the loss is the one-rank loss on
  // the whole global batch, whatever the layout (one small all-reduce per layer); local:
  // each rank's own batch.
  BalanceLossMode balance_loss_mode = BalanceLossMode::kGlobal;
  // batch: f_i and P_i over the batch's real tokens; sequence: DeepSeek-V3's complementary
  // sequence-wise loss, f_i and P_i over each sequence's own real tokens, the per-sequence
  // losses averaged over the sequences with any (of the global batch under
  // balance_loss_mode global), so no single sequence may crowd a few experts. Padding never
  // counts, here or in capacity, drops, loads or the exchange.
  BalanceLossScope balance_loss_scope = BalanceLossScope::kBatch;
  // switch: the loss above; cv_squared: Shazeer's importance and load losses,
  // alpha * (CV^2 of each expert's summed gate weights + CV^2 of its smooth load estimate),
  // over the batch (the balance group's under global). cv_squared needs noise shazeer.
  BalanceLossType balance_loss_type = BalanceLossType::kSwitch;
  double z_loss_coef = 0.001;  // beta of the router z-loss
  // Group-limited routing (DeepSeek-V2/V3): experts form num_groups equal groups of
  // consecutive ids; each token keeps its topk_groups best groups, scored by the sum of its
  // two best selection scores in each, and picks top_k among their experts. It bounds the
  // ranks a token travels to. topk_groups 0 = no limit. num_groups 0 in a file means one
  // group per EP rank of the stated parallel.expert, and hosts (kGroupsByHost) one group per
  // host of the EP group, parallel.expert / parallel.ranks_per_host (node-limited routing:
  // with topk_groups M a token reaches at most M hosts); loading resolves either to that
  // number, so the routing is the model's, never the live layout's (a resume or a tool at
  // another EP size or on other hosts routes alike).
  int64_t num_groups = 0;
  int64_t topk_groups = 0;
  // Aux-loss-free balancing (DeepSeek-V3): a per-expert bias added to the scores only to
  // choose experts, nudged by bias_update_rate towards under-loaded experts after each step.
  bool expert_bias = false;
  double bias_update_rate = 0.001;
  // How experts multiply: grouped (one ATen grouped GEMM over all experts, at::_grouped_mm;
  // shapes must be 16-byte aligned), loop (one GEMM per expert), or auto (grouped on CUDA
  // where the shapes allow it, else loop). Both give the same results, and both pipeline
  // with exchange_chunks > 1 (grouped: one grouped GEMM per matrix per piece).
  ExpertGemm expert_gemm = ExpertGemm::kAuto;
  // The expert-parallel exchange in this many pieces: experts compute on one piece while
  // the next travels, and each piece's outputs start home as soon as they are ready (on
  // either expert_gemm path). per_choice: groups of
  // each rank's local experts (at most their number), results bitwise the same for any
  // value; per_rank: shares of the tokens each rank sends each other rank, results the same
  // up to how an expert's weight gradient is grouped (rounding).
  int64_t exchange_chunks = 1;
  // What crosses: per_rank sends a token once to each EP rank holding any of its kept
  // experts (with their ids and gate weights) and receives back that rank's weighted sum,
  // so bytes per token = distinct destination ranks x row bytes; per_choice sends a row per
  // kept choice (top_k rows). Both pipeline in exchange_chunks pieces. auto: per_rank, or
  // per_choice on a GPU (per_rank syncs with the host 3 times per forward there, per_choice
  // once). Equal up to rounding (the sum is grouped by rank).
  Dispatch dispatch = Dispatch::kAuto;
  // How rows cross hosts. hierarchical: a token crosses the network once per destination
  // host (to the EP rank of its own place there), which fans it out to the host's ranks over
  // shared memory and sums their weighted outputs, so one row per (token, host) comes back;
  // inter-host messages per rank: hosts - 1. flat: every EP rank exchanges with every other
  // (moe.dispatch says what travels). auto: hierarchical when the live EP group spans
  // several hosts of several ranks each (faster there on the virtual hosts, slower with one
  // rank per host, docs/layer.md), else flat, and flat on GPUs, where the two levels over
  // NCCL have not run yet; the banner says which and why. Equal up to
  // rounding (the sum is grouped by host, then rank). Hosts are the live layout's
  // (MPI_COMM_TYPE_SHARED) and must hold equal numbers of the EP group's ranks.
  Exchange exchange = Exchange::kAuto;
  // Which blocks get an MoE FFN: none of the first `first_dense_layers`, then every
  // `every_n_layers`-th block (1 = all of the rest); the others get a dense FFN of d_ff.
  int64_t first_dense_layers = 0;
  int64_t every_n_layers = 1;
  // DeepSeekMoE shared experts: dense FFNs every token passes through, added to the routed
  // output. Stored fused as one FFN of width num_shared_experts * d_expert (the same sum).
  int64_t num_shared_experts = 0;
  // Qwen2-MoE's per-token gate on the shared experts: their output times sigmoid(h . w),
  // one learned vector w of d_model per MoE block.
  bool shared_expert_gate = false;
  // A testing and benchmarking tool, not a training method: replaces the router's choice of
  // experts after it has scored them (the gate weights still come from the router's scores,
  // so gradients flow). none | balanced (round-robin over global assignments) | hot:E:F (a
  // share F of assignments go to expert E) | zipf:S (experts drawn with P(e) ~ 1/(e+1)^S) |
  // empty_rank:R (top-k among experts not on EP rank R). Deterministic per global token.
  RoutingOverride routing_override;
  // Receive bound: no rank receives more than factor x its balanced share (tokens x top_k)
  // of rows; a source rank sends at most floor(factor * its tokens * top_k / EP size) rows
  // to one rank, later tokens dropped first. 0 = unbounded (dropless may then receive up
  // to EP size x tokens x top_k rows on one rank under skew).
  double max_receive_factor = 0.0;
};

struct ParallelConfig {
  int64_t expert = 1;  // expert-parallel group size; must divide num_experts
  // The EP ranks one host runs, as the layout is planned (consecutive ranks share a host);
  // 0 = not stated. Only moe.num_groups: hosts reads it, at load.
  int64_t ranks_per_host = 0;
  int64_t intra_op_threads =
      0;  // LibTorch threads per rank; 0 = the CPUs a rank is given / the ranks sharing them
};

struct TrainConfig {
  int64_t seed = 1234;
  DType dtype = DType::kFloat32;  // float32 | float64 (for proofs against the reference)
  DeviceKind device =
      DeviceKind::kCpu;  // cpu | cuda (one GPU per rank: local rank mod visible GPUs)
  // fp32, or bf16: matmuls under CUDA autocast in bfloat16; router, losses and optimizer
  // state stay float32. bf16 needs device cuda and dtype float32.
  Precision precision = Precision::kFp32;
  int64_t steps = 200;
  int64_t batch_size = 16;     // sequences per global batch
  double lr = 3e-3;            // peak learning rate
  int64_t warmup_steps = 20;   // linear warmup, then cosine decay; <= steps
  double min_lr_ratio = 0.1;   // the cosine ends at lr * min_lr_ratio
  double weight_decay = 0.01;  // AdamW decoupled decay
  double grad_clip = 1.0;      // global-norm clip; 0 disables
  int64_t eval_every = 50;     // steps between held-out evaluations; 0 disables
  int64_t log_every = 1;       // steps between log lines
  // lm: next-token loss; classify: sequence labels (needs model.num_classes); lm+classify.
  Loss loss = Loss::kLm;
  int64_t grad_accum_steps = 1;  // micro-batches per optimizer step (batch_size is per micro)
  int64_t checkpoint_every = 0;  // steps between checkpoints; 0 = only at the end
  int64_t keep_checkpoints = 2;  // newest checkpoints kept on disk; older ones are removed
  // After each evaluation that improves this held-out figure, a checkpoint is saved and
  // <out>/checkpoints/best names it (never pruned); the summary says which step it was.
  KeepBest keep_best = KeepBest::kNone;
  // > 0: stop after this many evaluations in a row without improving keep_best's figure.
  int64_t early_stop_patience = 0;
  // A collective (all-to-all, all-reduce, barrier) not done after this many seconds ends
  // the job with a message naming the rank, the collective and what the others were doing.
  // Ranks wait in a collective while rank 0 writes a checkpoint: keep it above that time.
  double collective_timeout_s = 600.0;
  // Gradient buckets start their sync during backward, as soon as backward has finished
  // them, instead of after it (the same sums, bit for bit).
  bool overlap_grad_sync = true;
  // Gradients travel in buckets of at most this many MiB (as DDP's bucket_cap_mb): smaller
  // buckets start sooner during backward, larger ones send fewer messages.
  double grad_bucket_mb = 32;
  // ZeRO-1: each rank keeps AdamW moments for its own chunk of every gradient bucket only
  // (replicated parameters sharded over the world, experts over their expert-DP group).
  bool shard_optimizer = false;
  GradReduceDtype grad_reduce_dtype = GradReduceDtype::kFloat32;
  // What backward recomputes instead of keeping: none; the experts' hidden activations (one
  // more pair of expert GEMMs per layer); or each whole block, keeping only its input (one
  // more forward, exchanges included). The same gradients, bit for bit, either way.
  Recompute recompute = Recompute::kNone;
};

struct DataConfig {
  // synthetic: Markov-chain families; proteins: FASTA / Stockholm files (format read from
  // the content, gzip or plain); text: any file, one token per byte; tokens: a token file
  // of ./launch/tokenize (memory-mapped; documents packed into seq_len windows, held out by
  // document).
  DataKind kind = DataKind::kSynthetic;
  std::string path = "";         // input files, comma-separated
  int64_t seq_len = 64;          // tokens per training sequence; <= model.max_seq_len
  int64_t num_families = 4;      // synthetic: number of Markov-chain families
  int64_t num_sequences = 1024;  // synthetic: sequences to generate
  double test_fraction = 0.1;    // held-out share, in [0, 1)
  // proteins: "" labels each sequence by its file (file = family); otherwise a regex
  // whose first capture group, searched in the sequence name, is the label.
  std::string label_pattern = "";
  TooLong too_long = TooLong::kError;  // a sequence over seq_len tokens: error | skip | crop
  // At most this many sequences of each family (label), a seeded choice, so that one large
  // family does not dominate; 0 keeps all. Applied after de-duplication, before the split.
  int64_t max_per_family = 0;
};

struct Config {
  ModelConfig model;
  MoeConfig moe;
  ParallelConfig parallel;
  TrainConfig train;
  DataConfig data;
  // "section.key" -> where its value came from: "file:line" or "--set"; absent = default.
  std::map<std::string, std::string> origin;
};

// --- Field constraints, named in error messages as "expected ...". ---
struct IntRange {
  int64_t min = std::numeric_limits<int64_t>::min();
  int64_t max = std::numeric_limits<int64_t>::max();
};
struct RealRange {
  double min = -std::numeric_limits<double>::infinity();
  double max = std::numeric_limits<double>::infinity();
  bool min_exclusive = false;
  bool max_exclusive = false;
};
struct AnyString {};
struct RoutingRule {};  // moe.routing_override's forms
struct OneOf {};        // an enum field: one of its ChoiceNames
struct AnyBool {};
struct CountOrWord {  // an integer in range, or `word` (held as -1: kAutoClasses, kGroupsByHost)
  IntRange range;
  const char* word;
};

template <class Visitor>
void visit_fields(ModelConfig& c, Visitor&& v) {
  v("vocab_size", c.vocab_size, IntRange{2, 1 << 20});
  v("d_model", c.d_model, IntRange{1, 1 << 16});
  v("n_layers", c.n_layers, IntRange{1, 1024});
  v("n_heads", c.n_heads, IntRange{1, 1024});
  v("n_kv_heads", c.n_kv_heads, IntRange{0, 1024});
  v("head_dim", c.head_dim, IntRange{0, 1 << 16});
  v("qkv_bias", c.qkv_bias, AnyBool{});
  v("qk_norm", c.qk_norm, OneOf{});
  v("d_ff", c.d_ff, IntRange{1, 1 << 18});
  v("max_seq_len", c.max_seq_len, IntRange{1, 1 << 20});
  v("positions", c.positions, OneOf{});
  v("rope_theta", c.rope_theta, RealRange{1.0, 1e12});
  v("norm_eps", c.norm_eps, RealRange{0.0, 1.0, true});
  v("tie_embeddings", c.tie_embeddings, AnyBool{});
  v("num_classes", c.num_classes, CountOrWord{{0, 1 << 20}, "auto"});
  v("attention_dropout", c.attention_dropout, RealRange{0.0, 1.0, false, true});
  v("residual_dropout", c.residual_dropout, RealRange{0.0, 1.0, false, true});
}

template <class Visitor>
void visit_fields(MoeConfig& c, Visitor&& v) {
  v("num_experts", c.num_experts, IntRange{1, 1 << 16});
  v("top_k", c.top_k, IntRange{1, 1 << 16});
  v("d_expert", c.d_expert, IntRange{1, 1 << 18});
  v("expert_type", c.expert_type, OneOf{});
  v("score_function", c.score_function, OneOf{});
  v("renormalize", c.renormalize, AnyBool{});
  v("route_scale", c.route_scale, RealRange{0.0, 1e6, true});
  v("routing_level", c.routing_level, OneOf{});
  v("router", c.router, OneOf{});
  v("allow_lookahead", c.allow_lookahead, AnyBool{});
  v("expert_choice_slices", c.expert_choice_slices, IntRange{0, 1 << 30});
  v("noise", c.noise, OneOf{});
  v("jitter_noise", c.jitter_noise, RealRange{0.0, 1.0, false, true});
  v("expert_dropout", c.expert_dropout, RealRange{0.0, 1.0, false, true});
  v("capacity_factor", c.capacity_factor, RealRange{0.0, 1e6});
  v("eval_capacity_factor", c.eval_capacity_factor, RealRange{0.0, 1e6});
  v("min_capacity", c.min_capacity, IntRange{0, 1 << 30});
  v("drop_policy", c.drop_policy, OneOf{});
  v("balance_loss_coef", c.balance_loss_coef, RealRange{0.0, 1e6});
  v("balance_loss_mode", c.balance_loss_mode, OneOf{});
  v("balance_loss_scope", c.balance_loss_scope, OneOf{});
  v("balance_loss_type", c.balance_loss_type, OneOf{});
  v("z_loss_coef", c.z_loss_coef, RealRange{0.0, 1e6});
  v("num_groups", c.num_groups, CountOrWord{{0, 1 << 16}, "hosts"});
  v("topk_groups", c.topk_groups, IntRange{0, 1 << 16});
  v("expert_bias", c.expert_bias, AnyBool{});
  v("bias_update_rate", c.bias_update_rate, RealRange{0.0, 1.0});
  v("expert_gemm", c.expert_gemm, OneOf{});
  v("exchange_chunks", c.exchange_chunks, IntRange{1, 1 << 16});
  v("dispatch", c.dispatch, OneOf{});
  v("exchange", c.exchange, OneOf{});
  v("first_dense_layers", c.first_dense_layers, IntRange{0, 1024});
  v("every_n_layers", c.every_n_layers, IntRange{1, 1024});
  v("num_shared_experts", c.num_shared_experts, IntRange{0, 1024});
  v("shared_expert_gate", c.shared_expert_gate, AnyBool{});
  v("routing_override", c.routing_override, RoutingRule{});
  v("max_receive_factor", c.max_receive_factor, RealRange{0.0, 1e6});
}

template <class Visitor>
void visit_fields(ParallelConfig& c, Visitor&& v) {
  v("expert", c.expert, IntRange{1, 1 << 16});
  v("ranks_per_host", c.ranks_per_host, IntRange{0, 1 << 16});
  v("intra_op_threads", c.intra_op_threads, IntRange{0, 1024});
}

template <class Visitor>
void visit_fields(TrainConfig& c, Visitor&& v) {
  v("seed", c.seed, IntRange{0, std::numeric_limits<int64_t>::max()});
  v("dtype", c.dtype, OneOf{});
  v("device", c.device, OneOf{});
  v("precision", c.precision, OneOf{});
  v("steps", c.steps, IntRange{1, std::numeric_limits<int64_t>::max()});
  v("batch_size", c.batch_size, IntRange{1, 1 << 24});
  v("lr", c.lr, RealRange{0.0, 10.0, true});
  v("warmup_steps", c.warmup_steps, IntRange{0, std::numeric_limits<int64_t>::max()});
  v("min_lr_ratio", c.min_lr_ratio, RealRange{0.0, 1.0});
  v("weight_decay", c.weight_decay, RealRange{0.0, 1.0});
  v("grad_clip", c.grad_clip, RealRange{0.0, 1e6});
  v("eval_every", c.eval_every, IntRange{0, std::numeric_limits<int64_t>::max()});
  v("log_every", c.log_every, IntRange{1, std::numeric_limits<int64_t>::max()});
  v("loss", c.loss, OneOf{});
  v("grad_accum_steps", c.grad_accum_steps, IntRange{1, 1 << 20});
  v("checkpoint_every", c.checkpoint_every, IntRange{0, std::numeric_limits<int64_t>::max()});
  v("keep_checkpoints", c.keep_checkpoints, IntRange{1, 1 << 20});
  v("keep_best", c.keep_best, OneOf{});
  v("early_stop_patience", c.early_stop_patience, IntRange{0, 1 << 20});
  v("collective_timeout_s", c.collective_timeout_s, RealRange{0.0, 1e7, true});
  v("overlap_grad_sync", c.overlap_grad_sync, AnyBool{});
  v("grad_bucket_mb", c.grad_bucket_mb, RealRange{0.0, 1e6, true});
  v("shard_optimizer", c.shard_optimizer, AnyBool{});
  v("grad_reduce_dtype", c.grad_reduce_dtype, OneOf{});
  v("recompute", c.recompute, OneOf{});
}

template <class Visitor>
void visit_fields(DataConfig& c, Visitor&& v) {
  v("kind", c.kind, OneOf{});
  v("path", c.path, AnyString{});
  v("seq_len", c.seq_len, IntRange{1, 1 << 20});
  v("num_families", c.num_families, IntRange{1, 1 << 16});
  v("num_sequences", c.num_sequences, IntRange{1, 1 << 30});
  v("test_fraction", c.test_fraction, RealRange{0.0, 1.0, false, true});
  v("label_pattern", c.label_pattern, AnyString{});
  v("too_long", c.too_long, OneOf{});
  v("max_per_family", c.max_per_family, IntRange{0, std::numeric_limits<int64_t>::max()});
}

// Calls section_visitor(name, section_struct) for the five sections, in file order.
template <class SectionVisitor>
void visit_sections(Config& c, SectionVisitor&& v) {
  v("model", c.model);
  v("moe", c.moe);
  v("parallel", c.parallel);
  v("train", c.train);
  v("data", c.data);
}

// Reads `path`, applies `overrides` ("section.key=value", in order) and validates.
// Throws Error with one line naming file:line (or --set), key, bad value, expectation.
Config load_config(const std::string& path, const std::vector<std::string>& overrides = {});

// Defaults plus overrides, no file: for tests and programmatic use.
Config default_config(const std::vector<std::string>& overrides = {});

// Rows of (section.key, value, origin) for every field, in declaration order.
struct ConfigRow {
  std::string key, value, origin;
};
std::vector<ConfigRow> config_rows(const Config& config);

}  // namespace triage
