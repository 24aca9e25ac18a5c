#!/usr/bin/env bash
# Tokens/s and MFU of ~350M and ~1B decoder-only models (bfloat16, cuDNN attention) on one NVIDIA GPU (H200),
# in under 10 minutes: bench/accelerator.py over a few (batch, remat) choices per model, best per model last.
#
# usage: bench/accelerator.sh [extra flags for bench/accelerator.py]
#        bench/accelerator.sh --smoke          # tiny model, 2 steps, on CPU: checks the driver, no GPU needed
# env:   TIMEOUT_S (default 570): hard wall-clock limit of the python run (its own --budget_s stops starting
#        new configurations at 420 s); INSTALL_CUDA=1: if the venv's jax has no CUDA backend, pip-install the
#        matching jax[cuda12] into it first (needs network); PYTHON=/path/to/python: use that interpreter and
#        its packages (a machine image with CUDA jax already installed) instead of creating .venv.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
TIMEOUT_S="${TIMEOUT_S:-570}"

smoke=0
for a in "$@"; do [[ "$a" == "--smoke" || "$a" == "--smoke=true" ]] && smoke=1; done

if [[ $smoke == 1 ]]; then
  exec timeout "$TIMEOUT_S" "$ROOT/run.sh" bench accelerator "$@"
fi

die() { echo "bench/accelerator.sh: error: $*" >&2; exit 1; }

# 1. A GPU must be visible to the driver.
command -v nvidia-smi >/dev/null 2>&1 || die "nvidia-smi not found: no NVIDIA driver on this machine (use --smoke on CPU)"
gpus="$(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>&1)" \
  || die "nvidia-smi failed: $gpus"
[[ -n "$gpus" ]] || die "nvidia-smi lists no GPU"
echo "GPUs: $(echo "$gpus" | tr '\n' ';')"
echo "$gpus" | grep -qi "H200" || echo "warning: not an H200; MFU uses lm/flops.py's peak for this device kind (or --peak_tflops)" >&2

# 2. The venv (created/updated as run.sh does) unless PYTHON names another interpreter, and a jax that sees
# the GPU.
if [[ -n "${PYTHON:-}" ]]; then
  bench=("$PY" "$ROOT/bench/accelerator.py")
else
  "$ROOT/run.sh" setup
  bench=("$ROOT/run.sh" bench accelerator)
fi
platform="$(timeout 120 "$PY" -c 'import jax; print(jax.devices()[0].platform)' 2>/dev/null || true)"
if [[ "$platform" != "gpu" && "${INSTALL_CUDA:-0}" == 1 ]]; then
  version="$("$PY" -c 'import jax; print(jax.__version__)')"
  echo "installing jax[cuda12]==$version into $ROOT/.venv" >&2
  "$PY" -m pip install --quiet "jax[cuda12]==$version" >&2
  platform="$(timeout 120 "$PY" -c 'import jax; print(jax.devices()[0].platform)' 2>/dev/null || true)"
fi
[[ "$platform" == "gpu" ]] || die "jax of $PY sees '${platform:-nothing}', not a GPU: install the CUDA backend \
(\`$PY -m pip install \"jax[cuda12]==\$(jax version)\"\`, or rerun with INSTALL_CUDA=1)"

# 3. The benchmark. XLA may take most of the GPU memory up front (the default 75% leaves room for cuDNN
# workspaces); an OOM configuration is reported and skipped, not fatal.
export XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.9}"
export CUDA_VISIBLE_DEVICES="${CUDA_VISIBLE_DEVICES:-0}"  # One chip.
status=0
timeout --kill-after=15 "$TIMEOUT_S" "${bench[@]}" \
  --models=350m,1b --seq_len=2048 --steps=10 --warmup=2 --budget_s=420 "$@" || status=$?
if [[ $status == 124 || $status == 137 ]]; then
  die "timed out after ${TIMEOUT_S}s: the lines above are the configurations that finished"
fi
exit $status
