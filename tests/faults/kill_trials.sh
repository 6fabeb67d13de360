#!/usr/bin/env bash
# kill_trials.sh TRIALS TRIAGE CONFIG WORK_DIR: kills one random rank of a 4-rank training run
# with SIGKILL at a random moment, TRIALS times. Every trial must end within 30 s of the kill
# with exit 137 (128 + SIGKILL: "killed by signal 9" in the exit-code table, which mpirun
# passes on) and no process left behind. Prints one line per trial and a summary.
set -u
trials=$1 triage=$2 config=$3 work=$4
rm -rf "$work"; mkdir -p "$work"
ended=0 in_time=0 clean=0
for ((t = 1; t <= trials; t++)); do
  out=$work/trial-$t
  mpirun -q -n 4 --oversubscribe --bind-to none -x OMP_NUM_THREADS=1 "$triage" train "$config" \
    --set parallel.expert=4 --set train.steps=100000 --set train.eval_every=0 --set train.log_every=1000 \
    --out "$out" >"$work/trial-$t.log" 2>&1 &
  mpirun_pid=$!
  # A random moment: start-up, the first steps, or well into training (0.5 - 4.5 s).
  sleep "$((RANDOM % 5)).$((RANDOM % 10))"; sleep 0.5
  mapfile -t ranks < <(pgrep -f -- "train $config .*--out $out" | grep -vx "$mpirun_pid")
  if ((${#ranks[@]} == 0)); then
    echo "trial $t: no rank found to kill (the run ended early?)"; wait "$mpirun_pid"; continue
  fi
  victim=${ranks[RANDOM % ${#ranks[@]}]}
  kill -9 "$victim"
  killed_at=$(date +%s%N)
  status=0
  while kill -0 "$mpirun_pid" 2>/dev/null; do
    (((($(date +%s%N) - killed_at) / 1000000000) < 40)) || break
    sleep 0.1
  done
  hung=false
  if kill -0 "$mpirun_pid" 2>/dev/null; then hung=true; kill -9 "$mpirun_pid"; fi
  wait "$mpirun_pid" 2>/dev/null || status=$?
  $hung && status=124
  ms=$((($(date +%s%N) - killed_at) / 1000000))
  sleep 1
  left=$(pgrep -f -- "--out $out" || true)
  ((status == 137)) && ended=$((ended + 1))
  ((status == 137 && ms <= 30000)) && in_time=$((in_time + 1))
  [[ -z $left ]] && clean=$((clean + 1))
  [[ -n $left ]] && pkill -9 -f -- "--out $out"
  echo "trial $t: killed pid $victim; job ended with exit $status after ${ms} ms; left behind: ${left:-none}"
done
echo "summary: $trials trials, $ended ended with 137, $in_time within 30 s, $clean with nothing left behind"
((ended == trials && in_time == trials && clean == trials))
