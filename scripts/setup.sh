#!/usr/bin/env bash
# One-step set-up on a fresh machine: a virtual environment in .venv with scaling_study and its
# dependencies. Safe to run again (it installs only what is missing).
#
#   TORCH_SPEC   what to install when the venv has no torch yet (default: torch==2.13.0; on a
#                machine with a CPU wheel of it on disk pip takes that, elsewhere PyPI's CUDA build).
#                A torch that is already there (say a CUDA/ROCm build you installed) is kept.
#   PYTHON       the interpreter for the venv (default: python3).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
extras=${1:-}

if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
pip() { .venv/bin/python -m pip --disable-pip-version-check "$@"; }
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
  # Installed on its own, first: an unpinned torch pulled in by a dependency would be a
  # multi-GB CUDA build even on a CPU-only machine.
  echo "[setup] installing $TORCH_SPEC"
  pip install -q "$TORCH_SPEC"
fi
echo "[setup] installing scaling_study${extras:+[$extras]} (editable)"
pip install -q -e ".${extras:+[$extras]}"
# Compile the optimizers' fused CPU kernels now rather than in every worker's first step (cached
# per machine; without a compiler the optimizers fall back to torch foreach ops).
.venv/bin/python -c "from scaling_study.optim import _native as n; print('[setup] fused optimizer kernels:', n.build() if n.compiler() else 'no C++ compiler, foreach fallback')" \
  || echo "[setup] fused optimizer kernels did not build; the optimizers will use the foreach fallback"
echo "[setup] ready: .venv/bin/scaling-study"
