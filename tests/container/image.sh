#!/usr/bin/env bash
# image.sh: the CPU image, built from scratch and run the ways a user runs it.
#   1. ./launch/container build: a Debian 12 base by debootstrap, then docker/Dockerfile on
#      it with podman (./launch/setup and the build inside), in a storage of its own
#   2. `triage info` inside
#   3. the main job, 2 ranks, short, writing its run folder to a mounted host folder
#   4. the installed package (find_package(Triage)) where no CUDA toolkit is: the consumer
#      test inside the image
#   5. two containers as two hosts: each in a virtual host's network namespace, pinned to
#      its own CPU; mpirun in the first starts the second's rank over ssh into the second
#   6. Charliecloud: the image unpacked by ch-convert, 2 ranks under ch-run started by the
#      host's mpirun, writing to a bound host folder
# On success it writes tests/container/verified.sha256 (tests/container/inputs.sh): the
# files the image is made from, as this run found them; every CI run checks them against it.
# Slow (it downloads LibTorch and builds Triage cold): runs only when TRIAGE_TEST_CONTAINER=1
# (`TRIAGE_TEST_CONTAINER=1 ./launch/test -L container`). Exit 77 (skip) with the reason
# when not asked for, not root, or podman, runc or debootstrap cannot be installed.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

[[ ${TRIAGE_TEST_CONTAINER:-} == 1 ]] || {
  echo "SKIP: builds the image from scratch (about 20 min and a 3 GB download on 2 cores);" \
    "run it with TRIAGE_TEST_CONTAINER=1 ./launch/test -L container"
  exit 77
}
[[ $(id -u) -eq 0 ]] || { echo "SKIP: debootstrap and network namespaces need root"; exit 77; }
packages=(podman runc uidmap slirp4netns fuse-overlayfs containernetworking-plugins debootstrap
  charliecloud-runtime charliecloud-builders pigz openssh-client)
missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      --no-install-recommends "${missing[@]}"; } >/dev/null 2>&1 ||
    { echo "SKIP: cannot install ${missing[*]} (apt-get install failed)"; exit 77; }
fi

# The image's inputs as this run starts: written to verified.sha256 if it passes.
inputs=$("$root/tests/container/inputs.sh")
work=$(mktemp -d /var/tmp/triage-container-test.XXXXXX)
export TRIAGE_PODMAN_ROOT=$work/podman TRIAGE_CONTAINER_RUNS=$work/runs
container=("$root/launch/container")
pm() { "${container[@]}" podman "$@"; }
# shellcheck disable=SC2317  # called by the trap
# Only what this test made: its containers, its images, its storage (not `podman system
# reset`, which would also delete the machine's podman networks).
cleanup() {
  pm rm -af -t 0 >/dev/null 2>&1 || true
  pm rmi -af >/dev/null 2>&1 || true
  findmnt -rn -o TARGET | grep "^$work/" | sort -r | xargs -r umount -l 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
step() { echo; echo "=== $* ($(date +%T))"; }
# A file the run folder must hold.
expect_file() { [[ -s $1 ]] || fail "$1: missing or empty"; }
mkdir -p "$TRIAGE_CONTAINER_RUNS"

step "1. base and image from scratch"
start=$SECONDS
set +o pipefail
"${container[@]}" build 2>&1 | tee "$work/build.log" | grep --line-buffered -E '^\[triage\]|^STEP|^Error'
built=${PIPESTATUS[0]}
set -o pipefail
((built == 0)) || { tail -n 30 "$work/build.log"; fail "the image did not build"; }
size=$(pm image inspect --format '{{.Size}}' localhost/triage:cpu)
echo "image localhost/triage:cpu: built in $((SECONDS - start)) s, $((size / 1000000)) MB"

step "2. triage info inside"
info=$("${container[@]}" run info)
echo "$info"
grep -q '^LibTorch *2\.' <<<"$info" || fail "triage info names no LibTorch"
grep -q '^MPI *Open MPI' <<<"$info" || fail "triage info names no Open MPI"

step "3. the main job, 2 ranks, run folder on the mounted volume"
"${container[@]}" run run -n 2 configs/protein-families.yaml --out runs/job --set parallel.expert=2 \
  --set train.steps=20 --set train.warmup_steps=2 --set train.eval_every=10 \
  --set train.checkpoint_every=10 | tee "$work/job.log"
job=$TRIAGE_CONTAINER_RUNS/job
for file in summary.json metrics.jsonl report.md loss.png specialisation.png run.json tokenizer.json; do
  expect_file "$job/$file"
done
[[ -d $job/checkpoints/step-00000020 ]] || fail "$job/checkpoints/step-00000020: no final checkpoint"
steps=$(grep -c '"step"' "$job/metrics.jsonl")
((steps >= 20)) || fail "$job/metrics.jsonl: $steps step records, expected 20"
grep -q '^step 20/20 ' "$work/job.log" || fail "the job's log has no step 20/20 line"

step "4. the installed package on a machine without a CUDA toolkit"
# The image has no nvcc: find_package(Triage) takes the CPU-only branch of the installed
# TriageConfig.cmake (LibTorch's CPU libraries without its CUDA check), which no host here
# can take. tests/consumer/run.sh installs, builds a project against it, and runs its EP
# layer against the one-rank reference at 1, 2 and 4 ranks, and the docs' example.
pm run --rm --entrypoint bash localhost/triage:cpu -c '! command -v nvcc &&
  tests/consumer/run.sh /triage/build /tmp/consumer &&
  grep "^set(TRIAGE_HAVE_CUDA " /tmp/consumer/prefix/lib*/cmake/Triage/TriageConfig.cmake' 2>&1 |
  tee "$work/consumer.log"
grep -q '^set(TRIAGE_HAVE_CUDA OFF)' "$work/consumer.log" ||
  fail "the installed TriageConfig.cmake in the image does not say TRIAGE_HAVE_CUDA OFF"
grep -q "^consumer: the docs' example ran on 2 ranks" "$work/consumer.log" ||
  fail "the installed package did not build and run where no CUDA toolkit is (log above)"

step "5. two containers as two hosts (virtual hosts' namespaces, ssh between them)"
keys=$work/keys
mkdir -m 700 "$keys"
ssh-keygen -q -t ed25519 -N '' -f "$keys/id_ed25519"
cp "$keys/id_ed25519.pub" "$keys/authorized_keys"
cat >"$work/two_hosts.sh" <<'INNER'
#!/usr/bin/env bash
# Inside virtual host 1: one container per virtual host, each running the image's ssh
# daemon in that host's network namespace and pinned to its CPUs; then the launcher in the
# first. podman itself runs in the test's own namespaces (nsenter), as it would on a host.
set -euo pipefail
read -ra cpus <<<"$TRIAGE_CLUSTER_CPUS"
pm() { nsenter -t "$OUTER_PID" -m -u -n -- "$CONTAINER" podman "$@"; }
for h in 1 2; do
  taskset -c "${cpus[$((h - 1))]}" nsenter -t "$OUTER_PID" -m -u -n -- "$CONTAINER" podman run \
    -d --rm --name "triage-host$h" --hostname "host$h" \
    --network "ns:/run/netns/$TRIAGE_CLUSTER_PREFIX-h$h" \
    -v "$KEYS:/root/.ssh:ro" -v "$TRIAGE_CONTAINER_RUNS:/triage/runs" localhost/triage:cpu sshd 2222
done
printf '%s slots=1\n' "$TRIAGE_CLUSTER_SUBNET.1" "$TRIAGE_CLUSTER_SUBNET.2" >"$TRIAGE_CONTAINER_RUNS/hosts"
# Each daemon accepts connections once its log says it listens on IPv4 (up to a minute).
for h in 1 2; do
  timeout 60 grep -q -m 1 "Server listening on 0.0.0.0 port 2222" < <(pm logs -f "triage-host$h" 2>&1) ||
    { echo "FAIL: the ssh daemon in container host$h did not start listening" >&2; exit 1; }
done
pm exec triage-host1 /triage/docker/entrypoint.sh run \
  --hostfile /triage/runs/hosts -n 2 configs/tiny.yaml --out runs/two-hosts --set train.steps=5 \
  --mpi --mca plm_rsh_args "-p 2222 -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR" \
  --mca btl_tcp_if_include "$TRIAGE_CLUSTER_NET" --mca oob_tcp_if_include "$TRIAGE_CLUSTER_NET"
INNER
export OUTER_PID=$$ CONTAINER=${container[0]} KEYS=$keys
bash "$root/tests/multinode/virtual_cluster.sh" --hosts 2 --slots 1 -- bash "$work/two_hosts.sh" |
  tee "$work/two_hosts.log"
pm rm -f -t 0 triage-host1 triage-host2 >/dev/null
# The rank table names each rank's host: one rank in each container.
grep -Eq '^ +0 +host1 ' "$work/two_hosts.log" || fail "rank 0 did not run in container host1"
grep -Eq '^ +1 +host2 ' "$work/two_hosts.log" || fail "rank 1 did not run in container host2"
grep -q '^step 5/5 ' "$work/two_hosts.log" || fail "the two-host job did not reach step 5"
expect_file "$TRIAGE_CONTAINER_RUNS/two-hosts/summary.json"

step "6. Charliecloud: ch-convert, then ch-run under the host's mpirun"
"${container[@]}" charliecloud "$work/charliecloud"
export USER=${USER:-root}  # ch-run refuses an unset USER
# Each ch-run is a user namespace of its own, where Open MPI's shared-memory single copy
# (CMA) cannot reach the other rank: it says so and copies twice unless told to.
mpirun --allow-run-as-root -n 2 --bind-to none --mca btl_vader_single_copy_mechanism none \
  ch-run -b "$TRIAGE_CONTAINER_RUNS:/triage/runs" "$work/charliecloud" -- \
  /triage/build/bin/triage train /triage/configs/tiny.yaml --out /triage/runs/charliecloud \
  --set train.steps=5 | tee "$work/charliecloud.log"
grep -q '^step 5/5 ' "$work/charliecloud.log" || fail "the Charliecloud job did not reach step 5"
expect_file "$TRIAGE_CONTAINER_RUNS/charliecloud/summary.json"
echo "$inputs" >"$root/tests/container/verified.sha256"
echo
echo "PASS: image built and run in $((SECONDS - start)) s all told; $((size / 1000000)) MB;" \
  "tests/container/verified.sha256 now holds the inputs it passed on"
