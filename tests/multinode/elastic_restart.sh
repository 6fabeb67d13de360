#!/usr/bin/env bash
# elastic_restart.sh LAUNCH_RUN TRIAGE CONFIG OUT: run inside virtual_cluster.sh --hosts 2
# --slots 4. Starts a 6-rank run (4 on host 1, 2 on host 2; batch 6, EP 2) with --restarts 1,
# waits for its step-20 checkpoint, then kills host 2 (its processes, and its link, so it no
# longer answers). The launcher must leave host 2 out and finish the run on 2 of host 1's 4
# slots from the newest checkpoint: 4 ranks are a multiple of EP but do not divide the batch
# of 6, 2 are the most that satisfy both. Then a plain 2-rank run resumed from that same checkpoint (OUT-reference) is
# the curve the elastic run must continue on (compared by train_runs_test).
set -euo pipefail
launch=$1 triage=$2 config=$3 out=$4
rm -rf "$out" "$out-reference"
mpi=(--mca plm_rsh_agent "$TRIAGE_RSH_AGENT" --mca btl_tcp_if_include "$TRIAGE_CLUSTER_NET"
     --mca oob_tcp_if_include "$TRIAGE_CLUSTER_NET")
train=(--set train.dtype=float64 --set parallel.expert=2 --set train.batch_size=6 --set train.steps=300 --set train.eval_every=0
       --set train.checkpoint_every=10 --set train.keep_checkpoints=100 --set train.log_every=50)
"$launch" --hostfile "$TRIAGE_HOSTFILE" -n 6 --restarts 1 "$config" --out "$out" "${train[@]}" --mpi "${mpi[@]}" \
  >"$out.log" 2>&1 &
launcher=$!
for ((i = 0; i < 600; i++)); do  # up to 60 s for the step-20 checkpoint
  [[ -f $out/checkpoints/latest && $(cat "$out/checkpoints/latest") > step-00000019 ]] && break
  sleep 0.1
done
host2="$TRIAGE_CLUSTER_PREFIX-h2"
echo "killing host 2 after $(cat "$out/checkpoints/latest")"
ip -n "$host2" link set eth0 down
ip netns pids "$host2" | xargs -r kill -9
status=0
wait "$launcher" || status=$?
cat "$out.log"
[[ $status == 0 ]] || { echo "FAIL: the launcher ended with exit $status"; exit 1; }
grep -q "host $TRIAGE_CLUSTER_SUBNET.2 does not answer; leaving it out" "$out.log" || { echo "FAIL: host 2 not left out"; exit 1; }
grep -q "using 2 of the 4 slots left: a multiple of parallel.expert (2) dividing train.batch_size (6)" "$out.log" ||
  { echo "FAIL: the restart did not pick 2 ranks for the batch of 6"; exit 1; }
resumed=$(sed -n 's/.*restarting from .*checkpoints\/\(step-[0-9]*\).*/\1/p' "$out.log" | head -n 1)
[[ -n $resumed ]] || { echo "FAIL: no restart from a checkpoint"; exit 1; }
echo "$((10#${resumed#step-}))" >"$out/resumed_from_step"

# The reference: 2 ranks, one host, resumed from the same checkpoint.
mkdir -p "$out-reference/checkpoints"
cp -r "$out/checkpoints/$resumed" "$out-reference/checkpoints/"
cp "$out/run.json" "$out-reference/"
echo "$resumed" >"$out-reference/checkpoints/latest"
mpirun -n 2 --oversubscribe -x OMP_NUM_THREADS=1 "$triage" train "$config" --out "$out-reference" "${train[@]}" --resume \
  >"$out-reference.log" 2>&1 || { cat "$out-reference.log"; echo "FAIL: the reference run failed"; exit 1; }
echo "elastic run resumed from $resumed on 2 ranks and finished"
