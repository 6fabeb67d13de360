#!/usr/bin/env bash
# ns_ssh.sh [ssh options] HOST COMMAND...: the ssh stand-in that mpirun calls (through
# --mca plm_rsh_agent) to start its daemon on HOST of a virtual_cluster.sh cluster. HOST is
# a cluster address 10.231.<id>.<h>; the command runs in host h's namespace with hostname
# "host<h>", pinned to host h's CPUs (word h of TRIAGE_CLUSTER_CPUS), through sh -c as ssh
# would run it.
set -euo pipefail
while [[ ${1:-} == -* ]]; do shift; done  # ssh options, e.g. -x
host=$1; shift
[[ $host == "$TRIAGE_CLUSTER_SUBNET".* ]] || { echo "ns_ssh.sh: $host is not a host of this virtual cluster" >&2; exit 255; }
h=${host##*.}
# A host whose link is down does not answer, as ssh to a dead node would not.
ip -n "$TRIAGE_CLUSTER_PREFIX-h$h" link show eth0 2>/dev/null | grep -q "state UP" ||
  { echo "ssh: connect to host $host port 22: No route to host" >&2; exit 255; }
read -ra host_cpus <<<"${TRIAGE_CLUSTER_CPUS:?run inside virtual_cluster.sh}"
# shellcheck disable=SC2016  # $0 and $* belong to the inner shells
exec ip netns exec "$TRIAGE_CLUSTER_PREFIX-h$h" taskset -c "${host_cpus[$((h - 1))]}" unshare --uts sh -c 'hostname "$0"; shift; exec sh -c "$*"' "host$h" - "$@"
