#!/usr/bin/env bash
# preempt.sh AFTER_S COMMAND...: starts COMMAND (a ./launch/run line), sends it SIGTERM after
# AFTER_S seconds, as a scheduler does before it kills a job, and passes when it ends with
# exit 75 (preempted, checkpoint saved) and says so.
set -u
after=$1; shift
"$@" >preempt.log 2>&1 &
pid=$!
sleep "$after"
kill -TERM "$pid"
wait "$pid"; status=$?
tail -n 5 preempt.log
[[ $status == 75 ]] || { echo "FAIL: exit $status; expected 75 (preempted)"; exit 1; }
grep -q "preempted by" preempt.log || { echo "FAIL: no 'preempted by' line"; exit 1; }
echo "ok"
