#!/usr/bin/env bash
# tests/gpu/check.sh: every GPU check in one run, for a lent GPU machine or any CUDA box.
# Builds with ninja, runs the GPU tests (parity with the CPU float64 reference, NCCL
# exchange), the MoE layer benchmark (Mixtral-like shape scaled to one GPU, bf16 and fp32)
# and a short bf16 training run, and prints a table last. Aim: under 8 minutes on 16 cores.
# Exits non-zero when any stage fails, any test fails, or a test skips while a GPU is
# visible (a skip is only honest where there is no GPU); the table says which.
#   tests/gpu/check.sh [--build-dir DIR] [--configure-only | --build-only]   (CHECK_USE_DEPS=1: use the carried
#   dependencies even where the system has its own, to rehearse)
# Open MPI, yaml-cpp, GoogleTest, CLI11 and nlohmann-json come from the system, or else
# from tests/gpu/deps/root (tests/gpu/fetch_deps.sh, run beforehand where apt works, and
# carried along). LibTorch is the machine's PyTorch. Results go to $OUT (or build dir).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=$root/build-gpu configure_only=false build_only=false
while (($#)); do
  case $1 in
    --build-dir) build=$2; shift 2 ;;
    --configure-only) configure_only=true; shift ;;
    --build-only) build_only=true; shift ;;  # a lease's first call: fail early, keep the build
    *) echo "check.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
results=${OUT:-$build/gpu-results}
mkdir -p "$results"
say() { printf '[gpu-check %s] %s\n' "$(date +%T)" "$*"; }

deps=$root/tests/gpu/deps/root
cmake_args=(-G Ninja -DCMAKE_BUILD_TYPE=Release -DTORCH_CUDA_ARCH_LIST=9.0 -DCMAKE_CUDA_ARCHITECTURES=90)
prefix="$(python3 -c 'import torch.utils; print(torch.utils.cmake_prefix_path)' 2>/dev/null || true)"
[[ -n $prefix ]] || { say "error: no PyTorch for python3 (LibTorch comes from it)"; exit 1; }
nccl_root=$(python3 -c 'import nvidia.nccl as n; print(list(n.__path__)[0])' 2>/dev/null || true)
[[ -z $nccl_root ]] || cmake_args+=(-DNCCL_ROOT="$nccl_root")
if [[ -d $deps ]] && { [[ ${CHECK_USE_DEPS:-} == 1 ]] || ! command -v mpicxx >/dev/null; }; then
  say "using carried dependencies in $deps"
  export OPAL_PREFIX=$deps/usr  # relocated Open MPI finds its files here
  export PATH=$deps/usr/bin:$PATH
  export LD_LIBRARY_PATH=$deps/usr/lib/x86_64-linux-gnu:$deps/lib/x86_64-linux-gnu:$deps/usr/lib/x86_64-linux-gnu/openmpi/lib:${LD_LIBRARY_PATH:-}
  prefix="$prefix;$deps/usr;$deps/usr/lib/x86_64-linux-gnu/cmake"
  cmake_args+=(-DMPI_CXX_COMPILER="$deps/usr/bin/mpicxx.openmpi" -DMPIEXEC_EXECUTABLE="$deps/usr/bin/orterun"
               -DCLI11_DIR="$deps/usr/share/cmake/CLI11" -Dnlohmann_json_DIR="$deps/usr/share/cmake/nlohmann_json"
               -DZLIB_ROOT="$deps/usr" -DZLIB_LIBRARY="$deps/lib/x86_64-linux-gnu/libz.so.1")
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
nvidia-smi -L 2>/dev/null | tee "$results/gpus.txt" || say "nvidia-smi: not available"

say "configure $build"
cmake -S "$root" -B "$build" "${cmake_args[@]}" -DCMAKE_PREFIX_PATH="$prefix" >"$results/configure.log" 2>&1 ||
  { tail -30 "$results/configure.log"; exit 1; }
grep -E "LibTorch|GPU path" "$results/configure.log" || true
$configure_only && { say "configured (--configure-only)"; exit 0; }

say "build (ninja, $(nproc) jobs)"
cmake --build "$build" --target triage gpu_tests -- -j "$(nproc)" >"$results/build.log" 2>&1 ||
  { tail -40 "$results/build.log"; exit 1; }
"$build/bin/triage" info | tee "$results/info.txt"
$build_only && { say "built (--build-only)"; exit 0; }

failed=()  # the stages that did not finish
say "GPU tests"
set +e
"$build/bin/gpu_tests" --gtest_output="json:$results/gpu_tests.json" 2>&1 | tee "$results/gpu_tests.txt" | grep -E '^\[ +(OK|FAILED|SKIPPED) +\]'
((PIPESTATUS[0] == 0)) || failed+=("gpu tests")
set -e

say "MoE layer benchmark"
bench() {  # name, then bench options
  local name=$1; shift
  "$build/bin/triage" bench moe-layer --device cuda "$@" --out "$results/$name.json" 2>"$results/$name.log" ||
    { tail -3 "$results/$name.log"; failed+=("$name"); }
}
bench layer_bf16_mixtral_scaled --dtype bfloat16 --tokens 8192 --d-model 4096 --d-expert 14336 --experts 8 --top-k 2 --reps 10
bench layer_fp32_small --dtype float32 --tokens 8192 --d-model 1024 --d-expert 2816 --experts 8 --top-k 2 --reps 10

say "training: tiny config, bf16 on one GPU"
"$build/bin/triage" train "$root/configs/tiny.yaml" --set train.device=cuda --set train.precision=bf16 \
  --set parallel.expert=1 --set train.steps=20 --set train.warmup_steps=2 --out "$results/train_bf16" \
  >"$results/train_bf16.log" 2>&1 || { tail -5 "$results/train_bf16.log"; failed+=("train bf16"); }

# Expert parallelism over NCCL across GPUs: it has run on a world of one only (one lent
# GPU). With 2+ GPUs visible, the tiny config in float64 at EP = GPUs must follow the
# one-process CPU float64 reference, and a bf16 run at EP = GPUs must train.
gpus=$(grep -c '^GPU' "$results/gpus.txt" 2>/dev/null || true)
if ((${gpus:-0} >= 2)); then
  say "multi-GPU: tiny config at EP $gpus over NCCL against the CPU float64 reference"
  f64=(--set train.dtype=float64 --set train.eval_every=0)
  mpirun -n "$gpus" --bind-to none "$build/bin/triage" train "$root/configs/tiny.yaml" \
    --set train.device=cuda --set parallel.expert="$gpus" --set train.batch_size=$((8 * gpus)) \
    "${f64[@]}" --out "$results/ep_gpus_f64" >"$results/ep_gpus_f64.log" 2>&1 ||
    { tail -5 "$results/ep_gpus_f64.log"; failed+=("multi-GPU float64"); }
  "$build/bin/triage" train "$root/configs/tiny.yaml" --set parallel.expert=1 "${f64[@]}" \
    --set train.batch_size=$((8 * gpus)) --out "$results/ep_cpu_reference" \
    >"$results/ep_cpu_reference.log" 2>&1 || failed+=("multi-GPU reference")
  mpirun -n "$gpus" --bind-to none "$build/bin/triage" train "$root/configs/tiny.yaml" \
    --set train.device=cuda --set train.precision=bf16 --set parallel.expert="$gpus" \
    --set train.batch_size=$((8 * gpus)) --set train.steps=20 --set train.warmup_steps=2 \
    --out "$results/ep_gpus_bf16" >"$results/ep_gpus_bf16.log" 2>&1 ||
    { tail -5 "$results/ep_gpus_bf16.log"; failed+=("multi-GPU bf16"); }
else
  say "multi-GPU: skipped (${gpus:-0} GPU visible; the stage needs 2+)"
fi

say "summary"
set +e
python3 - "$results" <<'PY'
import json, math, pathlib, sys
r = pathlib.Path(sys.argv[1])
gpu_visible = "GPU" in (r / "gpus.txt").read_text() if (r / "gpus.txt").exists() else False
rows, bad = [], []
try:
    t = json.loads((r / "gpu_tests.json").read_text())
    for suite in t["testsuites"]:
        for case in suite["testsuite"]:
            status = "SKIPPED" if case.get("result") == "SKIPPED" else ("FAILED" if case.get("failures") else "OK")
            name = f"test {suite['name']}.{case['name']}"
            if status == "FAILED" or (status == "SKIPPED" and gpu_visible):
                bad.append(name)
                status += " (a GPU is visible)" if status == "SKIPPED" else ""
            rows.append((name, status))
except Exception as e:
    rows.append(("gpu tests", f"no result ({e})"))
    bad.append("gpu tests")
for name in ("layer_bf16_mixtral_scaled", "layer_fp32_small"):
    try:
        b = json.loads((r / f"{name}.json").read_text())
        for c, v in b["contenders"].items():
            rows.append((f"{name} {c}", f"{v['tokens_per_s']:,.0f} tok/s, {v['active_tflops']:.1f} TFLOP/s"))
        rows.append((f"{name} moe/dense", f"{b['moe_vs_dense_throughput']:.2f} (target >= 0.70)"))
        rows.append((f"{name} moe TFLOP/s / plain matmul's", f"{b['moe_tflops_over_matmul']:.2f}"))
        if "grouped_vs_loop_speedup" in b:
            rows.append((f"{name} grouped/loop", f"{b['grouped_vs_loop_speedup']:.2f}x (target >= 2)"))
    except Exception as e:
        rows.append((name, f"no result ({e})"))
        bad.append(name)
try:
    steps = [json.loads(l) for l in (r / "train_bf16" / "metrics.jsonl").read_text().splitlines()]
    steps = [s for s in steps if not s.get("eval")]
    rows.append(("train bf16 tiny: loss first -> last", f"{steps[0]['loss']:.4f} -> {steps[-1]['loss']:.4f}"))
    losses = [s["loss"] for s in steps]
    # Finite throughout, and the last five steps below the first five on average: one
    # noisy step may rise, a model that does not learn may not.
    if not all(math.isfinite(x) for x in losses) or len(losses) < 10 or \
            sum(losses[-5:]) >= sum(losses[:5]):
        rows.append(("train bf16", "FAILED: loss not finite or not falling"))
        bad.append("train bf16 (loss)")
except Exception as e:
    rows.append(("train bf16", f"no result ({e})"))
    bad.append("train bf16")
def curve(run):
    lines = (r / run / "metrics.jsonl").read_text().splitlines()
    return [s for s in map(json.loads, lines) if not s.get("eval")]
if (r / "ep_gpus_f64").exists():
    try:
        got, want = curve("ep_gpus_f64"), curve("ep_cpu_reference")
        worst = max(abs(a[k] - b[k]) / max(abs(b[k]), 1e-300)
                    for a, b in zip(got, want, strict=True) for k in ("loss", "grad_norm"))
        rows.append(("multi-GPU EP float64 vs CPU reference (rel.)", f"{worst:.1e} (limit 1e-8)"))
        if worst > 1e-8:
            bad.append("multi-GPU float64 parity")
        b16 = [s["loss"] for s in curve("ep_gpus_bf16")]
        rows.append(("multi-GPU EP bf16: loss first -> last", f"{b16[0]:.4f} -> {b16[-1]:.4f}"))
        if not all(math.isfinite(x) for x in b16) or sum(b16[-5:]) >= sum(b16[:5]):
            bad.append("multi-GPU bf16 (loss)")
    except Exception as e:
        rows.append(("multi-GPU", f"no result ({e})"))
        bad.append("multi-GPU")
width = max(len(a) for a, _ in rows)
print("\n".join(f"{a:<{width}}  {b}" for a, b in rows))
if bad:
    print(f"FAILED: {', '.join(bad)}")
sys.exit(1 if bad else 0)
PY
summary_status=$?
set -e
if ((${#failed[@]})) || ((summary_status != 0)); then
  say "check FAILED${failed[*]:+: ${failed[*]}}"
  exit 1
fi
say "check passed"
