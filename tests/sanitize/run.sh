#!/usr/bin/env bash
# run.sh build SOURCE_DIR SANITIZE_BUILD_DIR: configures (once) and builds the unit and MPI
# test binaries with AddressSanitizer + UndefinedBehaviorSanitizer (CPU only).
# run.sh test SANITIZE_BUILD_DIR RANKS BINARY ARGS...: runs one of them (under mpirun when
# RANKS > 0); any sanitizer report fails the test.
set -euo pipefail
case $1 in
  build)
    source_dir=$2 build_dir=$3
    if [[ ! -f $build_dir/build.ninja ]]; then
      cmake -S "$source_dir" -B "$build_dir" -G Ninja -DTRIAGE_SANITIZE=ON -DTRIAGE_ENABLE_CUDA=OFF \
        -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$build_dir.configure.log" 2>&1 || { cat "$build_dir.configure.log"; exit 1; }
    fi
    cmake --build "$build_dir" --target unit_tests exchange_test ep_layer_test ep_training_test
    ;;
  test)
    build_dir=$2 ranks=$3 binary=$4; shift 4
    # Leak checks off: LibTorch and Open MPI keep one-time allocations until exit.
    export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
    log=$(mktemp)
    status=0
    if ((ranks > 0)); then
      mpirun -n "$ranks" --oversubscribe -x ASAN_OPTIONS -x UBSAN_OPTIONS "$build_dir/bin/$binary" "$@" >"$log" 2>&1 || status=$?
    else
      "$build_dir/bin/$binary" "$@" >"$log" 2>&1 || status=$?
    fi
    grep -aE "(PASSED|FAILED) |tests? ran" "$log" | sed "s/\x1b\[[0-9;]*m//g" || true
    if ((status != 0)) || grep -qE "ERROR: AddressSanitizer|runtime error:" "$log"; then
      grep -E -A30 "ERROR: AddressSanitizer|runtime error:|FAILED" "$log" | head -80 || tail -n 60 "$log"
      rm -f "$log"; echo "FAIL: exit $status"; exit 1
    fi
    rm -f "$log"; echo ok
    ;;
  *) echo "usage: run.sh build|test ..." >&2; exit 2 ;;
esac
