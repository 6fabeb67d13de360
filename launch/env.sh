# shellcheck shell=bash
# Shared by the launch scripts: where Triage keeps its toolchain cache and build.
# Sourced, not executed. Every path can be overridden from the environment.
TRIAGE_TORCH_VERSION=2.11.0
TRIAGE_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TRIAGE_CACHE=${TRIAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/triage}
# The virtual environment lives outside the source tree, keyed by the pinned version,
# so every clone and every CI run on this machine reuses one download.
TRIAGE_VENV=${TRIAGE_VENV:-$TRIAGE_CACHE/torch-$TRIAGE_TORCH_VERSION}
TRIAGE_BUILD=${TRIAGE_BUILD:-$TRIAGE_ROOT/build}
export CCACHE_DIR=${CCACHE_DIR:-$TRIAGE_CACHE/ccache}

triage_say() { printf '[triage] %s\n' "$*"; }
# Share compiler cache hits between clones in different folders.
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$TRIAGE_ROOT}
export CCACHE_NOHASHDIR=${CCACHE_NOHASHDIR:-1}
