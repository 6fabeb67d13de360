#!/usr/bin/env bash
# fails_with.sh EXPECTED COMMAND...: passes when COMMAND exits non-zero and its output
# contains the line fragment EXPECTED (a fixed string), i.e. bad input is refused with the
# promised message instead of a crash, a hang or silence.
expected=$1; shift
output=$("$@" 2>&1); status=$?
printf '%s\n' "$output"
if [[ $status -eq 0 ]]; then echo "FAIL: exit status 0; expected a failure"; exit 1; fi
if [[ $status -ge 128 ]]; then echo "FAIL: killed by signal $((status - 128)); expected a clean error"; exit 1; fi
grep -qF -- "$expected" <<<"$output" || { echo "FAIL: no line containing: $expected"; exit 1; }
