#!/usr/bin/env bash
# bad_inputs.sh TRIAGE SOURCE_DIR WORK_DIR: the catalogue of bad inputs. Every row hands
# Triage one mistake (config, data file, checkpoint, command line, launcher option,
# hostfile) and passes when it is refused with exit code 1 or 2 as the row says, with one
# error line containing the expected text, and no crash, hang or stack trace.
set -u
triage=$1 src=$2 work=$3
rm -rf "$work"; mkdir -p "$work"; cd "$work" || exit 1
export TRIAGE_NO_BUILD=1 TRIAGE_BUILD
TRIAGE_BUILD=$(cd "$(dirname "$triage")/.." && pwd)
tiny=$src/configs/tiny.yaml
run="$src/launch/run"

# --- Inputs to refuse. ------------------------------------------------------------------
cfg() { printf '%b' "$2" >"$1.yaml"; }
cfg syntax 'moe:\n  top_k: [1, 2\n'
cfg tab 'moe:\n\ttop_k: 2\n'
cfg section 'optimizer:\n  lr: 1\n'
cfg key 'moe:\n  topk: 2\n'
cfg dupkey 'moe:\n  top_k: 1\n  top_k: 2\n'
cfg dupsection 'moe:\n  top_k: 1\nmoe:\n  top_k: 2\n'
cfg notmap 'moe: 3\n'
cfg toplist '- moe\n'
cfg word 'moe:\n  top_k: two\n'
cfg fraction 'model:\n  d_model: 64.5\n'
cfg zero 'moe:\n  num_experts: 0\n'
cfg negative 'moe:\n  capacity_factor: -1\n'
cfg nan 'moe:\n  jitter_noise: .nan\n'
cfg bool 'moe:\n  renormalize: maybe\n'
cfg choice 'moe:\n  score_function: softplus\n'
cfg topk 'moe:\n  num_experts: 4\n  top_k: 5\n'
cfg heads 'model:\n  d_model: 64\n  n_heads: 5\n'
cfg rotary 'model:\n  d_model: 12\n  n_heads: 4\n'
cfg ep 'parallel:\n  expert: 3\n'
cfg warmup 'train:\n  steps: 10\n  warmup_steps: 20\n'
cfg seqlen 'model:\n  max_seq_len: 32\ndata:\n  seq_len: 64\n'
cfg nopath 'data:\n  kind: proteins\n'
cfg bf16 'train:\n  precision: bf16\n'
cfg classify 'train:\n  loss: classify\n'
cfg textclass 'model:\n  vocab_size: 256\n  num_classes: 2\ntrain:\n  loss: classify\ndata:\n  kind: text\n  path: x\n'
cfg vocab 'data:\n  kind: text\n  path: x\n'
cfg regex 'data:\n  label_pattern: "([a-z"\n'
cfg nogroup 'data:\n  label_pattern: "^[a-z]+"\n'
cfg override 'moe:\n  routing_override: skewed\n'
cfg hot 'moe:\n  num_experts: 4\n  routing_override: hot:4:0.5\n'
cfg emptyrank 'moe:\n  routing_override: empty_rank:2\nparallel:\n  expert: 2\n'
cfg receive 'moe:\n  max_receive_factor: 0.5\n'
cfg chunks 'moe:\n  exchange_chunks: 0\n'
cfg timeout 'train:\n  collective_timeout_s: 0\n'
cfg null 'moe:\n  top_k:\n'
cfg steps 'train:\n  steps: 0\n'
mkdir -p adir

printf '>ok\nACDE\n>bad\nAC1E\n' >digit.fa
: >empty.fa
printf '>long\nACDEFGHIKLMNPQRSTVWYACDEFGHIKLMNPQRSTVWY\n' >long.fa
printf '# STOCKHOLM 1.0\nseq1 ACDE\nbad line here\n//\n' >bad.sto
printf '# STOCKHOLM 1.0\nseq1 ACDE\n' >unterminated.sto
printf 'ACDE\n>late\nACDE\n' >noheader.fa
printf '>\nACDE\n' >noname.fa
printf '>e\n\n>f\nAC\n' >emptyseq.fa
printf '>ok\nACDEFGHIKL\n' | gzip >good.fa.gz
head -c 20 good.fa.gz >truncated.fa.gz
printf '\037\213garbage-not-deflate' >garbage.fa.gz
: >empty.txt
printf 'short' >short.txt
printf '>sp|A_HUMAN\nACDEFG\n>nomatch\nACDEFG\n' >labels.fa
# A token file (layout in src/data/token_file.h) of one 40-id document, vocabulary 300.
python3 -c 'import struct, sys; ids = list(range(5, 44)) + [0]
sys.stdout.buffer.write(struct.pack("<8sIIQQQQI12x", b"TRIAGETK", 1, 2, 300, 0, 40, 1, 0)
  + struct.pack("<40H", *ids) + struct.pack("<2Q", 0, 40))' >wide.tokens
printf '{"text": "fine"}\n{"body": "no text key"}\n' >notext.jsonl
# Token files of vocabulary 20 beside a tokenizer.json: one whose CRC-32 the header records
# (but not the amino-acid vocabulary a run of the tiny config keeps), one whose it does not.
python3 -c 'import struct, sys, zlib
json = open(sys.argv[1], "w"); json.write("{\"other\": \"tokenizer\"}\n"); json.close()
for name, crc in (("other.tokens", zlib.crc32(b"{\"other\": \"tokenizer\"}\n")), ("badcrc.tokens", 12345)):
  ids = [5 + i % 10 for i in range(99)] + [0]
  open(name, "wb").write(struct.pack("<8sIIQQQQI12x", b"TRIAGETK", 1, 2, 20, 0, 100, 1, crc)
    + struct.pack("<100H", *ids) + struct.pack("<2Q", 0, 100))' other.tokens.tokenizer.json
cp other.tokens.tokenizer.json badcrc.tokens.tokenizer.json

# A checkpoint to spoil: 2 steps of the tiny config on one rank.
"$triage" train "$tiny" --set parallel.expert=1 --set train.steps=2 --set train.warmup_steps=1 \
  --set train.eval_every=0 --out good >good.log 2>&1 || { cat good.log; echo "FAIL: could not make a checkpoint"; exit 1; }
spoil() {  # spoil NAME: a copy of the good run, in NAME/
  rm -rf "$1"; cp -r good "$1"; step="$1/checkpoints/step-00000002"
}
spoil nolatest; rm "$step/../latest"
spoil dangling; echo step-00000099 >"$step/../latest"
spoil notjson; echo '{not json' >"$step/manifest.json"
spoil nofiles; sed -i 's/"files"/"fils"/' "$step/manifest.json"
spoil format; sed -i 's/triage-checkpoint-1/triage-checkpoint-0/' "$step/manifest.json"
spoil checksum; printf X | dd of="$step/expert-00001.safetensors" bs=1 seek=300 conv=notrunc 2>/dev/null
spoil truncated; truncate -s 1000 "$step/replicated.safetensors"
spoil missing; rm "$step/expert-00003.safetensors"
spoil experts; spoil dtype; spoil shape
spoil header; printf 'XXXXXXXX' | dd of="$step/expert-00000.safetensors" bs=1 seek=0 conv=notrunc 2>/dev/null
# Re-record the spoiled header's size and checksum so the decoder, not the checksum, meets it.
python_free_crc() { gzip -c <"$1" | tail -c 8 | head -c 4 | od -An -tu4 | tr -d ' '; }
crc=$(python_free_crc "$step/expert-00000.safetensors")
sed -i "/expert-00000.safetensors/,/}/ s/\"crc32\": [0-9]*/\"crc32\": $crc/" "$step/manifest.json"

# Hugging Face folders for `triage import`: a tensor file with no tensors, and a config.json
# with one value of the wrong kind.
hf_folder() {  # hf_folder NAME CONFIG_JSON
  mkdir -p "$1"; printf '%s' "$2" >"$1/config.json"
  printf '\x08\x00\x00\x00\x00\x00\x00\x00{}      ' >"$1/model.safetensors"
}
hf_shape='"hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2, "num_local_experts": 4, "intermediate_size": 32, "num_experts_per_tok": 2'
hf_folder hf_fraction "{\"model_type\": \"mixtral\", $hf_shape, \"num_key_value_heads\": 2e62}"
hf_folder hf_type "{\"model_type\": \"mixtral\", $hf_shape, \"rope_theta\": \"ten thousand\"}"

printf '' >hosts.empty
printf 'nodeA slots=two\n' >hosts.badslots
printf 'nodeA slots=2 extra\n' >hosts.stray

# --- The table: NAME EXIT EXPECTED COMMAND... ---------------------------------------------
rows=0 failures=0
row() {
  local name=$1 want=$2 expected=$3; shift 3
  rows=$((rows + 1))
  local output status
  output=$(timeout -k 5 60 "$@" 2>&1); status=$?
  local problem=""
  if [[ $status != "$want" ]]; then problem="exit $status, expected $want"
  elif ! grep -qF -- "$expected" <<<"$output"; then problem="no line containing: $expected"
  elif grep -qE 'terminate called|Segmentation|Aborted|stack trace|internal error|MPI_ABORT|^#[0-9]' <<<"$output"; then
    problem="crash or stack trace in the output"
  elif [[ $(grep -cE '(^|[] ])error: |^launch/run: |^triage: ' <<<"$output") != 1 ]]; then
    problem="expected exactly one error line"
  fi
  if [[ -n $problem ]]; then
    failures=$((failures + 1))
    printf 'FAIL %-28s %s\n%s\n' "$name" "$problem" "$(head -c 1500 <<<"$output" | sed 's/^/    | /')"
  else
    printf 'ok   %-28s %s\n' "$name" "$(grep -m1 -E '(^|[] ])error: |^launch/run: |^triage: ' <<<"$output" | cut -c1-150)"
  fi
}
T=("$triage" train)
one=(--set parallel.expert=1)

# Config: YAML syntax, keys, types, ranges, cross-field rules.
row config_yaml_syntax 1 "syntax.yaml:3: not valid YAML" "$triage" config syntax.yaml
row config_tab_indent 1 "tab.yaml:" "$triage" config tab.yaml
row config_unknown_section 1 "unknown section optimizer" "$triage" config section.yaml
row config_unknown_key 1 "unknown key moe.topk; did you mean moe.top_k?" "$triage" config key.yaml
row config_duplicate_key 1 "key moe.top_k appears twice" "$triage" config dupkey.yaml
row config_duplicate_section 1 "section moe appears twice" "$triage" config dupsection.yaml
row config_section_not_mapping 1 "section moe = 3: expected a mapping" "$triage" config notmap.yaml
row config_top_level_list 1 "expected a mapping of sections" "$triage" config toplist.yaml
row config_word_for_integer 1 "moe.top_k = two: expected an integer" "$triage" config word.yaml
row config_fraction_for_integer 1 "model.d_model = 64.5: expected an integer" "$triage" config fraction.yaml
row config_zero_exchange_chunks 1 "moe.exchange_chunks = 0: expected an integer in [1, 65536]" "$triage" config chunks.yaml
row config_zero_experts 1 "moe.num_experts = 0: expected an integer in [1, 65536]" "$triage" config zero.yaml
row config_negative_capacity 1 "moe.capacity_factor = -1: expected a number in [0, 1000000]" "$triage" config negative.yaml
row config_nan 1 "moe.jitter_noise = .nan" "$triage" config nan.yaml
row config_not_boolean 1 "moe.renormalize = maybe: expected true or false" "$triage" config bool.yaml
row config_bad_choice 1 "expected one of softmax, sigmoid" "$triage" config choice.yaml
row config_null_value 1 "moe.top_k = (empty): expected an integer" "$triage" config null.yaml
row config_zero_steps 1 "train.steps = 0: expected an integer >= 1" "$triage" config steps.yaml
row config_top_k_above_experts 1 "expected at most moe.num_experts (4)" "$triage" config topk.yaml
row config_heads_not_dividing 1 "expected a divisor of model.d_model (64)" "$triage" config heads.yaml
row config_rotary_odd_head 1 "rotary needs an even head width" "$triage" config rotary.yaml
row config_ep_not_dividing_experts 1 "parallel.expert = 3: expected a divisor of moe.num_experts (8)" "$triage" config ep.yaml
row config_warmup_over_steps 1 "expected at most train.steps (10)" "$triage" config warmup.yaml
row config_seq_len_over_positions 1 "expected at most model.max_seq_len (32)" "$triage" config seqlen.yaml
row config_files_without_path 1 "data.path = \"\": expected a file path" "$triage" config nopath.yaml
row config_bf16_on_cpu 1 "bf16 autocast is the GPU path" "$triage" config bf16.yaml
row config_classify_without_classes 1 "model.num_classes = 0: expected at least 1, or auto," "$triage" config classify.yaml
row config_text_with_labels 1 "lm when data.kind is text (it has no labels)" "$triage" config textclass.yaml
row config_vocab_too_small_for_text 1 "at least 256 for data.kind text" "$triage" config vocab.yaml
row config_bad_regex 1 "data.label_pattern = ([a-z: expected a valid regular expression" "$triage" config regex.yaml
row config_regex_without_group 1 "expected a regular expression with a capture group" "$triage" config nogroup.yaml
row config_unknown_routing_override 1 "moe.routing_override = skewed: expected none, balanced" "$triage" config override.yaml
row config_hot_expert_out_of_range 1 "expected a hot expert below moe.num_experts (4)" "$triage" config hot.yaml
row config_empty_rank_out_of_range 1 "expected an EP rank below parallel.expert (2)" "$triage" config emptyrank.yaml
row config_receive_factor_below_one 1 "expected 0 (unbounded) or at least 1" "$triage" config receive.yaml
row config_zero_collective_timeout 1 "train.collective_timeout_s = 0" "$triage" config timeout.yaml
row config_missing_file 1 "nothere.yaml: cannot open the config file" "$triage" config nothere.yaml
row config_is_a_directory 1 "adir: is a directory; expected a YAML config file" "$triage" config adir
row set_without_equals 1 "--set moe.top_k: expected section.key=value" "$triage" config "$tiny" --set moe.top_k
row set_unknown_key 1 "unknown key train.learning_rate" "$triage" config "$tiny" --set train.learning_rate=1
row set_bad_yaml_value 1 "--set moe.top_k=[1: value is not valid YAML" "$triage" config "$tiny" --set 'moe.top_k=[1'

# Data files: FASTA, Stockholm, gzip, text.
P=(--set data.kind=proteins "${one[@]}" --out data_run)
row data_missing_file 1 "nothere.fa: cannot open the sequence file" "${T[@]}" "$tiny" "${P[@]}" --set data.path=nothere.fa
row data_empty_file 1 "empty.fa: no sequences found" "${T[@]}" "$tiny" "${P[@]}" --set data.path=empty.fa
row data_bad_residue 1 "digit.fa:4: sequence bad has '1'" "${T[@]}" "$tiny" "${P[@]}" --set data.path=digit.fa
row data_sequence_too_long 1 "long.fa:1: sequence long has 40 residues; expected at most 22" "${T[@]}" "$tiny" "${P[@]}" --set data.path=long.fa
row data_malformed_stockholm 1 "bad.sto:3: found 'bad line here'" "${T[@]}" "$tiny" "${P[@]}" --set data.path=bad.sto
row data_unterminated_stockholm 1 "the alignment ends without '//'" "${T[@]}" "$tiny" "${P[@]}" --set data.path=unterminated.sto
row data_fasta_without_header 1 "noheader.fa:1: found 'ACDE'" "${T[@]}" "$tiny" "${P[@]}" --set data.path=noheader.fa
row data_fasta_header_without_name 1 "noname.fa:1: header without a name" "${T[@]}" "$tiny" "${P[@]}" --set data.path=noname.fa
row data_empty_sequence 1 "emptyseq.fa:1: sequence e is empty" "${T[@]}" "$tiny" "${P[@]}" --set data.path=emptyseq.fa
row data_truncated_gzip 1 "truncated.fa.gz" "${T[@]}" "$tiny" "${P[@]}" --set data.path=truncated.fa.gz
row data_corrupt_gzip 1 "garbage.fa.gz" "${T[@]}" "$tiny" "${P[@]}" --set data.path=garbage.fa.gz
row data_one_of_several_missing 1 "nothere.fa: cannot open the sequence file" "${T[@]}" "$tiny" "${P[@]}" --set data.path=good.fa.gz,nothere.fa
row data_label_pattern_misses 1 "nomatch" "${T[@]}" "$tiny" "${P[@]}" --set data.path=labels.fa --set 'data.label_pattern=^sp\|([A-Z]+)_'
X=(--set data.kind=text --set model.vocab_size=256 --set train.loss=lm --set model.num_classes=0 "${one[@]}" --out text_run)
row text_missing_file 1 "nothere.txt: cannot open the text file" "${T[@]}" "$tiny" "${X[@]}" --set data.path=nothere.txt
row text_empty_file 1 "empty.txt: 0 bytes; expected at least data.seq_len" "${T[@]}" "$tiny" "${X[@]}" --set data.path=empty.txt
row text_shorter_than_a_sequence 1 "short.txt: 5 bytes; expected at least data.seq_len" "${T[@]}" "$tiny" "${X[@]}" --set data.path=short.txt
K=(--set data.kind=tokens --set train.loss=lm --set model.num_classes=0 "${one[@]}" --out tokens_run)
row tokens_not_a_token_file 1 "short.txt: 5 bytes; expected a token file of at least a 64-byte header" "${T[@]}" "$tiny" "${K[@]}" --set data.path=short.txt
row tokens_vocabulary_larger_than_the_model 1 "model.vocab_size = 24: expected at least the vocabulary of wide.tokens (300 ids)" "${T[@]}" "$tiny" "${K[@]}" --set data.path=wide.tokens
rm -rf tokmix; cp -r good tokmix
row tokens_made_by_another_tokenizer_than_the_models 1 "other.tokens was tokenized by another tokenizer than the model's tokmix/tokenizer.json" "${T[@]}" "$tiny" --set data.kind=tokens --set train.loss=lm --set model.num_classes=0 "${one[@]}" --out tokmix --resume --set data.path=other.tokens
row tokens_tokenizer_not_the_one_recorded 1 "badcrc.tokens.tokenizer.json: CRC-32" "${T[@]}" "$tiny" "${K[@]}" --set data.path=badcrc.tokens
row tokenize_jsonl_line_without_text 2 "notext.jsonl:2: expected a string under \"text\" (--text-key)" "$src/launch/tokenize" --train-bpe 300 --out notext.tokens notext.jsonl
row tokenize_missing_input 2 "nothere.txt: no such file" "$src/launch/tokenize" --train-bpe 300 --out missing.tokens nothere.txt

# Checkpoints: manifest, sizes, checksums, shapes, dtypes, another model.
R=("${T[@]}" "$tiny" "${one[@]}" --resume --out)
row checkpoint_none 1 "nolatest/checkpoints/latest: no checkpoint to resume from" "${R[@]}" nolatest
row checkpoint_latest_dangling 1 "names step-00000099, which is not in" "${R[@]}" dangling
row checkpoint_manifest_not_json 1 "manifest.json: not valid JSON" "${R[@]}" notjson
row checkpoint_manifest_without_files 1 "manifest.json: malformed manifest" "${R[@]}" nofiles
row checkpoint_wrong_format 1 "format \"triage-checkpoint-0\"; expected \"triage-checkpoint-1\"" "${R[@]}" format
row checkpoint_checksum_mismatch 1 "expert-00001.safetensors: checksum mismatch: the file is corrupt" "${R[@]}" checksum
row checkpoint_truncated_file 1 "replicated.safetensors: truncated or overwritten: 1000 bytes" "${R[@]}" truncated
row checkpoint_missing_file 1 "expert-00003.safetensors: cannot open (missing from the checkpoint?)" "${R[@]}" missing
row checkpoint_corrupt_header 1 "expert-00000.safetensors: header length" "${R[@]}" header
row checkpoint_other_expert_count 1 "num_experts = 4; expected moe.num_experts (8)" "${T[@]}" "$tiny" "${one[@]}" --resume --out experts --set moe.num_experts=8
row checkpoint_other_dtype 1 "dtype = \"float32\"; expected train.dtype (float64)" "${T[@]}" "$tiny" "${one[@]}" --resume --out dtype --set train.dtype=float64
row checkpoint_other_model 1 "this model expects" "${T[@]}" "$tiny" "${one[@]}" --resume --out shape --set model.d_model=32

row hf_import_fraction 1 "hf_fraction/config.json: num_key_value_heads = 2e+62; expected a whole number in range" "$triage" import --format hf hf_fraction --out hf_run
row hf_import_wrong_type 1 "hf_type/config.json: unexpected value" "$triage" import --format hf hf_type --out hf_run

# Command line.
row cli_unknown_subcommand 2 "triage: A subcommand is required" "$triage" fly
row cli_unknown_option 2 "The following arguments were not expected: 3 --speed" "${T[@]}" "$tiny" --speed 3
row cli_negative_stop_after 2 "--stop-after: -1: expected a positive whole number" "${T[@]}" "$tiny" --stop-after -1
row cli_resume_and_overwrite 2 "--resume excludes --overwrite" "${T[@]}" "$tiny" --resume --overwrite
row cli_missing_config 2 "config is required" "${T[@]}"
row cli_bad_fault_injection 1 "TRIAGE_FAULT = crash:rank=0: expected stall|exit|exit_in_checkpoint" env TRIAGE_FAULT=crash:rank=0 "${T[@]}" "$tiny" "${one[@]}" --out fault_run
row cli_bad_bench_routing 1 "error: --routing skew: expected uniform, none, balanced" "$triage" bench exchange --routing skew
printf '{"slots_per_host": 1, "links": {"intra_host": {"latency_s": 1e-6, "bandwidth_Bps": 1e9}}}\n' >params_bad.json
printf 'grid:\n  rank: [1, 2]\n' >sweep_key.yaml
printf 'grid:\n  ranks: [two]\n' >sweep_value.yaml
row cli_bench_layer_top_k 1 "error: --top-k 9: expected at most --experts (8)" "$triage" bench layer --top-k 9
row cli_bench_layer_missing_replay 1 "error: /nonexistent-run/metrics.jsonl: cannot read; replay:RUN_DIR expects a training run's folder" "$triage" bench layer --routing replay:/nonexistent-run
row cli_bench_model_neither_use 1 "error: bench model: expected either --check RESULTS.jsonl or a CONFIG" "$triage" bench model --params params_bad.json
row cli_bench_model_bad_params 1 "error: params_bad.json: compute: expected a mapping of numbers" "$triage" bench model --params params_bad.json "$tiny"
row sweep_unknown_key 2 "error: sweep_key.yaml: grid.rank: unknown key" "$src/launch/bench" sweep_key.yaml --out sweep_out
row sweep_bad_value 2 "error: sweep_value.yaml: grid.ranks = 'two': expected a positive int" "$src/launch/bench" sweep_value.yaml --out sweep_out
row train_missing_replay_run 1 "error: /nonexistent-run/metrics.jsonl: cannot read; replay:RUN_DIR expects a training run's folder" "${T[@]}" "$tiny" "${one[@]}" --set moe.routing_override=replay:/nonexistent-run --out replay_run
row cli_clobbering_run 1 "good: holds an earlier run" "${T[@]}" "$tiny" "${one[@]}" --out good

# Launcher options and hostfiles.
row launch_zero_ranks 2 "launch/run: -n 0: expected a positive whole number" "$run" -n 0 "$tiny"
row launch_word_ranks 2 "launch/run: -n four: expected a positive whole number" "$run" -n four "$tiny"
row launch_missing_config 2 "launch/run: nothere.yaml: no such config file" "$run" nothere.yaml
row launch_bad_launcher 2 "launch/run: --launcher pbs: expected mpirun or srun" "$run" --launcher pbs "$tiny"
row launch_bad_restarts 2 "launch/run: --restarts many: expected a whole number" "$run" --restarts many "$tiny"
row launch_bad_gpus 2 "launch/run: --gpus-per-node x: expected a whole number" "$run" --gpus-per-node x "$tiny"
row launch_ranks_not_multiple_of_ep 2 "launch/run: 3 ranks: expected a multiple of parallel.expert (2)" "$run" -n 3 "$tiny"
row launch_more_ranks_than_gpus 2 "launch/run: --ranks-per-node 4 exceeds --gpus-per-node 2" "$run" --gpus-per-node 2 --ranks-per-node 4 "$tiny"
row launch_bad_config_value 1 "error: --set moe.top_k=9: moe.top_k = 9: expected at most moe.num_experts (4)" "$run" "$tiny" --set moe.top_k=9
row hostfile_missing 2 "launch/run: --hostfile nohosts: no such file" "$run" --hostfile nohosts "$tiny"
row hostfile_empty 2 "launch/run: --hostfile hosts.empty: no hosts in it" "$run" --hostfile hosts.empty "$tiny"
row hostfile_bad_slots 2 "launch/run: hosts.badslots:1: slots=two: expected slots=N with N a positive whole number" "$run" --hostfile hosts.badslots "$tiny"
row hostfile_stray_word 2 "launch/run: hosts.stray:1: 'extra': expected HOST [slots=N] [max_slots=N]" "$run" --hostfile hosts.stray "$tiny"

echo "$rows bad inputs, $((rows - failures)) refused as expected, $failures not"
((failures == 0))
