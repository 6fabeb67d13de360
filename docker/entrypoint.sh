#!/usr/bin/env bash
# The image's entry point:
#   run ARGS...     ./launch/run ARGS... (the launcher; the image is already built)
#   report RUN_DIR  ./launch/report RUN_DIR
#   test [ARGS...]  ./launch/test ARGS... (builds the tests on first use, then CTest; e.g.
#                   `test -L unit`)
#   sshd [PORT]     an ssh daemon (default port 2222) so that mpirun in another container
#                   can start ranks here; keys come from /root/.ssh (mount them)
#   anything else   the triage executable with those arguments (config, info, bench, ...)
set -euo pipefail
cd /triage
case ${1:-} in
  run) shift; exec ./launch/run "$@" ;;
  report) shift; exec ./launch/report "$@" ;;
  test) shift; exec ./launch/test "$@" ;;
  sshd)
    mkdir -p /run/sshd
    # -e: its log goes to the container's (docker logs), where "Server listening on ...
    # port N." says when it accepts connections.
    exec /usr/sbin/sshd -D -e -p "${2:-2222}" -o PermitRootLogin=prohibit-password ;;
  *) exec /triage/build/bin/triage "$@" ;;
esac
