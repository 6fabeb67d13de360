#!/usr/bin/env bash
# virtual_cluster.sh [--hosts N] [--slots S] [--cpus-per-host C] [--rate RATE [--burst SIZE]]
#                    [--netem "ARGS"] -- COMMAND...
#
# Several "hosts" on this one machine, for multi-node runs without a cluster: N network
# namespaces, each with its own hostname (unshare --uts) and one veth link to a bridge
# that lives in a switch namespace, addresses 10.231.<id>.1 .. N/24. Nothing is added to
# the machine's own network and no address outside these namespaces is used.
# COMMAND runs inside host 1 (where mpirun starts) with:
#   TRIAGE_HOSTFILE    hostfile naming every host by address, with S slots each
#   TRIAGE_RSH_AGENT   the ssh stand-in for `mpirun --mca plm_rsh_agent`
#   TRIAGE_CLUSTER_NET the subnet, for --mca btl_tcp_if_include / oob_tcp_if_include
# A slow inter-node network: --rate caps every host link with a token bucket (tc tbf,
# e.g. 1gbit) whose bucket holds --burst bytes (default 256kb, tc's units: kilobytes): a
# message that finds the bucket full passes that much at the veth's speed, so a real link
# of the same rate, which has no such allowance, is slower for messages near it; --netem adds `tc qdisc ... netem ARGS` instead (e.g. "delay 2ms rate
# 1gbit"; needs the kernel's sch_netem, which some VMs lack: then exit 77 with the reason).
# Each host is pinned to CPUs of its own (taskset, inherited by everything started there):
# host h gets C CPUs from (h-1) x C, C = this machine's CPUs / N by default, so hosts do not
# share cores unless they must (more hosts than CPUs: then they wrap around, and it says so).
# Ranks size their threads from these CPUs; a host holds S ranks honestly when S <= C.
# With S > C the ranks of a host share its CPUs and yield them while waiting in MPI
# (mpi_yield_when_idle), which Open MPI would not do by itself here.
# Everything is torn down on exit, however COMMAND ends.
# Exit status 77 (CTest's skip) with the reason when not root or `ip` is missing.
set -euo pipefail

hosts=2 slots=2 netem="" rate="" burst=256kb cpus_per_host=""
while (($#)); do
  case $1 in
    --hosts) hosts=$2; shift 2 ;;
    --slots) slots=$2; shift 2 ;;
    --netem) netem=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --burst) burst=$2; shift 2 ;;
    --cpus-per-host) cpus_per_host=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "virtual_cluster.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
(($#)) || { echo "usage: virtual_cluster.sh [--hosts N] [--slots S] [--netem ARGS] -- COMMAND..." >&2; exit 2; }
[[ $(id -u) -eq 0 ]] || { echo "SKIP: network namespaces need root"; exit 77; }
for tool in ip unshare; do
  command -v $tool >/dev/null || { echo "SKIP: $tool is not installed (iproute2, util-linux)"; exit 77; }
done
[[ -z $netem$rate ]] || command -v tc >/dev/null || { echo "SKIP: --netem and --rate need tc (iproute2)"; exit 77; }

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
id=$(($$ % 200 + 20))           # one subnet per invocation, so parallel clusters do not meet
prefix="tri$$"                  # namespace names: tri<pid>-sw, tri<pid>-h1, ...
switch="$prefix-sw"
net="10.231.$id.0/24"
workdir=$(mktemp -d)

# shellcheck disable=SC2317  # called by the trap
teardown() {
  for ns in $(ip netns list | awk '{print $1}' | grep "^$prefix-" || true); do
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
  done
  rm -rf "$workdir"
}
trap teardown EXIT INT TERM

ip netns add "$switch"
ip -n "$switch" link add br0 type bridge
ip -n "$switch" link set br0 up
: >"$workdir/hostfile"
for ((h = 1; h <= hosts; h++)); do
  ns="$prefix-h$h"
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  ip link add "t$$h$h" netns "$ns" type veth peer name "p$h" netns "$switch"
  ip -n "$ns" link set "t$$h$h" name eth0
  ip -n "$ns" addr add "10.231.$id.$h/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$switch" link set "p$h" master br0 up
  if [[ -n $netem ]]; then
    read -ra netem_args <<<"$netem"  # "delay 2ms rate 1gbit" -> words
    ip netns exec "$ns" tc qdisc add dev eth0 root netem "${netem_args[@]}" ||
      { echo "SKIP: tc netem is not available in this kernel (sch_netem); try --rate"; exit 77; }
  elif [[ -n $rate ]]; then
    ip netns exec "$ns" tc qdisc add dev eth0 root tbf rate "$rate" burst "$burst" latency 100ms
  fi
  echo "10.231.$id.$h slots=$slots" >>"$workdir/hostfile"
done

export TRIAGE_HOSTFILE="$workdir/hostfile"
export TRIAGE_RSH_AGENT="$here/ns_ssh.sh"
export TRIAGE_CLUSTER_NET="$net"
export TRIAGE_CLUSTER_PREFIX="$prefix"
export TRIAGE_CLUSTER_SUBNET="10.231.$id"
# CPUs per host: the CPUs this script may use (its mask), in order, dealt out by host.
mapfile -t usable < <(taskset -pc $$ | sed 's/.*: //' | tr ',' '\n' |
  awk -F- '{ if (NF == 2) for (c = $1; c <= $2; c++) print c; else print $1 }')
cpus_per_host=${cpus_per_host:-$((${#usable[@]} / hosts > 0 ? ${#usable[@]} / hosts : 1))}
host_cpus=()
for ((h = 0; h < hosts; h++)); do
  list=""
  for ((c = 0; c < cpus_per_host; c++)); do
    list+="${list:+,}${usable[$(((h * cpus_per_host + c) % ${#usable[@]}))]}"
  done
  host_cpus+=("$list")
done
((hosts * cpus_per_host <= ${#usable[@]})) ||
  echo "virtual cluster: warning: $hosts hosts x $cpus_per_host CPUs exceed the ${#usable[@]} CPUs here; hosts share some"
export TRIAGE_CLUSTER_CPUS="${host_cpus[*]}"  # host h's CPU list is word h
# Open MPI binds ranks to the node's cores (core 0 first) whatever the mask it started in,
# which would put every host's first rank on core 0: ranks keep their host's mask instead.
export OMPI_MCA_hwloc_base_binding_policy=none
# More ranks than CPUs on a host: a rank waiting in MPI must yield its CPU to the peer it
# waits for. Open MPI yields on its own only when it sees more ranks than slots, and the
# hostfile's slots here are the ranks; busy-polling instead costs a time slice per collective
# (4 ranks on 2 one-CPU hosts: 0.27 of one host's tokens/s, 0.99 yielding).
sharing=""
if ((slots > cpus_per_host)) && [[ -z ${OMPI_MCA_mpi_yield_when_idle:-} ]]; then
  export OMPI_MCA_mpi_yield_when_idle=1
  sharing="; $slots ranks share $cpus_per_host CPU(s) per host, so ranks yield when idle"
fi
echo "virtual cluster: $hosts hosts ($(tr '\n' ' ' <"$workdir/hostfile")) on $net${netem:+, netem $netem}${rate:+, links capped at $rate (burst $burst)}; CPUs by host: ${host_cpus[*]}$sharing"
set +e
# shellcheck disable=SC2016  # $0 and $@ belong to the inner shell
ip netns exec "$prefix-h1" taskset -c "${host_cpus[0]}" unshare --uts sh -c 'hostname "$0"; exec "$@"' "host1" "$@"
status=$?
exit $status
