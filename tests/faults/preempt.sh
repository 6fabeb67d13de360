#!/usr/bin/env bash
# preempt.sh PATTERN COMMAND...: starts COMMAND (a ./launch/run line), waits until its output
# contains the fixed string PATTERN (a moment of the run: the launch, a step, the report),
# sends it SIGTERM as a scheduler does before it kills a job, and passes when it ends with
# exit 75 (preempted: stopped with nothing half-written) and says how to continue. The
# output is in preempt.log.
set -u
pattern=$1; shift
"$@" >preempt.log 2>&1 &
pid=$!
until grep -qF -- "$pattern" preempt.log; do
  if ! kill -0 "$pid" 2>/dev/null; then
    tail -n 5 preempt.log; echo "FAIL: ended before its output said '$pattern'"; exit 1
  fi
  sleep 0.02
done
kill -TERM "$pid"
wait "$pid"; status=$?
tail -n 5 preempt.log
[[ $status == 75 ]] || { echo "FAIL: exit $status; expected 75 (preempted)"; exit 1; }
grep -q "preempted" preempt.log || { echo "FAIL: no line saying it was preempted"; exit 1; }
echo "ok: SIGTERM after '$pattern' ended the job with 75"
