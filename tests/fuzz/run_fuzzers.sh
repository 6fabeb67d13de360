#!/usr/bin/env bash
# run_fuzzers.sh build SOURCE_DIR FUZZ_BUILD_DIR: configures (once) and builds the libFuzzer
# targets with clang++ and AddressSanitizer + UndefinedBehaviorSanitizer.
# run_fuzzers.sh run FUZZ_BUILD_DIR TARGET SECONDS CORPUS_SEEDS WORK_DIR: fuzzes TARGET for
# SECONDS from the seeds (the working corpus grows in WORK_DIR, never in the tree) and fails
# with the crashing input's path when libFuzzer or a sanitizer finds a bug.
set -euo pipefail
case $1 in
  build)
    source_dir=$2 build_dir=$3
    command -v clang++ >/dev/null || { echo "SKIP: clang++ not installed (./launch/setup installs it)"; exit 77; }
    if [[ ! -f $build_dir/build.ninja ]]; then
      CC=clang CXX=clang++ cmake -S "$source_dir" -B "$build_dir" -G Ninja -DTRIAGE_FUZZ=ON \
        -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$build_dir.configure.log" 2>&1 ||
        { cat "$build_dir.configure.log"; exit 1; }
    fi
    cmake --build "$build_dir"
    ;;
  run)
    build_dir=$2 target=$3 seconds=$4 seeds=$5 work=$6
    rm -rf "$work"; mkdir -p "$work/corpus"; cd "$work"
    # Leak checks off: LibTorch's one-time allocations at start-up are not ours to free.
    status=0
    ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=print_stacktrace=1 \
      "$build_dir/bin/$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 \
      "$work/corpus" "$seeds" >fuzz.log 2>&1 || status=$?
    grep -E "^stat::(number_of_executed_units|average_exec_per_sec|new_units_added)" fuzz.log || true
    if ((status != 0)); then
      grep -E "ERROR|SUMMARY|what\(\)|Test unit written" fuzz.log || tail -n 40 fuzz.log
      echo "FAIL: $target found a bug; the input is in $work (add it to $seeds as a regression case)"
      exit 1
    fi
    echo "ok: $target ran ${seconds} s without a crash"
    ;;
  *) echo "usage: run_fuzzers.sh build|run ..." >&2; exit 2 ;;
esac
