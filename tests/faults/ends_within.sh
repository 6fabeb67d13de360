#!/usr/bin/env bash
# ends_within.sh LIMIT_S EXIT_CODE EXPECTED MARKER COMMAND...: passes when COMMAND fails
# with exit status EXIT_CODE (src/common/exit_codes.h; not by this script's own time limit)
# within LIMIT_S seconds, its output contains the fixed string EXPECTED (may be empty), and
# a second later no process whose command line contains MARKER (e.g. the run's --out
# folder) is left behind.
set -u
limit=$1 want_status=$2 expected=$3 marker=$4; shift 4
start=$(date +%s%N)
output=$(timeout -k 5 $((limit + 30)) "$@" 2>&1); status=$?
elapsed_ms=$((($(date +%s%N) - start) / 1000000))
printf '%s\n' "$output" | tail -n 20
echo "exit $status after ${elapsed_ms} ms (limit ${limit} s)"
fail() { echo "FAIL: $*"; exit 1; }
((status != 0)) || fail "the command succeeded; expected it to fail"
((status != 124 && status != 137)) || fail "still running after $((limit + 30)) s: a hang"
((elapsed_ms <= limit * 1000)) || fail "took ${elapsed_ms} ms; expected at most ${limit} s"
((status == want_status)) || fail "exit $status; expected $want_status"
[[ -z $expected ]] || grep -qF -- "$expected" <<<"$output" || fail "no line containing: $expected"
sleep 1
# pgrep into a file, not $(...): a command-substitution subshell would match the marker too.
pids=$(mktemp)
pgrep -f -- "$marker" >"$pids"
left=$(grep -vx -e "$$" -e "$PPID" "$pids" || true)
rm -f "$pids"
[[ -z $left ]] || fail "processes left behind: $(ps -o pid=,args= -p "${left//$'\n'/,}" | head -5)"
echo "ok"
