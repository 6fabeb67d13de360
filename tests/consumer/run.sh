#!/usr/bin/env bash
# The installed package as a user meets it: installs Triage from BUILD_DIR, moves the
# install elsewhere (the package must be relocatable), builds this folder's project against
# it with find_package(Triage), and runs its EP layer check under mpirun at 1, 2 and 4 ranks.
# Usage: run.sh BUILD_DIR WORK_DIR
set -euo pipefail
build_dir=$1
work=$2
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=launch/env.sh
source "$here/../../launch/env.sh"

rm -rf "$work"
mkdir -p "$work"
cmake --install "$build_dir" --prefix "$work/staged" >"$work/install.log"
mv "$work/staged" "$work/prefix"
torch_prefix=$("$TRIAGE_VENV/bin/python" -c "import torch.utils; print(torch.utils.cmake_prefix_path)")
launcher=()
if command -v ccache >/dev/null; then launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache); fi
if ! TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} cmake -S "$here" -B "$work/build" -G Ninja \
    -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 \
    -DCMAKE_PREFIX_PATH="$work/prefix;$torch_prefix" "${launcher[@]}" >"$work/configure.log" 2>&1; then
  tail -n 30 "$work/configure.log"
  echo "consumer: cmake could not configure against the installed package ($work/configure.log)"
  exit 1
fi
cmake --build "$work/build"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
for ranks in 1 2 4; do
  mpirun -n "$ranks" --oversubscribe --bind-to none "$work/build/ep_layer_check"
done
# The docs' example main.cc runs as written, on 2 ranks.
mpirun -n 2 --oversubscribe --bind-to none "$work/build/docs_example"
echo "consumer: the docs' example ran on 2 ranks"
