#!/usr/bin/env bash
# inputs.sh [--check]: the SHA-256 of every file that decides how the container image is
# built and run (sha256sum's lines, repository-relative paths). tests/container/verified.sha256
# holds these lines as they were when tests/container/image.sh last passed; it writes them.
# With --check: exit 1, naming the files, when they differ, so that a change to the image's
# inputs cannot reach the main branch without the slow container test having passed on it.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
# The installed package's config and its CPU-only LibTorch lookup are here because the image
# is the only place without a CUDA toolkit, where their CPU-only branch runs.
inputs=(.dockerignore docker/Dockerfile docker/entrypoint.sh launch/env.sh launch/setup
  launch/container src/torch_without_cuda.cmake src/TriageConfig.cmake.in tests/container/image.sh)
if [[ ${1:-} != --check ]]; then
  sha256sum "${inputs[@]}"
  exit 0
fi
stamp=tests/container/verified.sha256
[[ -f $stamp ]] || { echo "$stamp is missing: run TRIAGE_TEST_CONTAINER=1 ./launch/test -L container"; exit 1; }
current=$(sha256sum "${inputs[@]}")
if [[ $current != "$(cat "$stamp")" ]]; then
  changed=$(comm -23 <(sort <<<"$current") <(sort "$stamp") | cut -d' ' -f3- | tr '\n' ' ')
  echo "the container image's inputs changed since its test last passed: ${changed:-the list of inputs}"
  echo "run TRIAGE_TEST_CONTAINER=1 ./launch/test -L container (about 20 min); on success it"
  echo "rewrites $stamp: commit that with the change"
  exit 1
fi
echo "the container test last passed on these inputs: ${inputs[*]}"
