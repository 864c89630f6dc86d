#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite: unit tests plus the end-to-end Ray tests.
#   bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
# The dashboard test drives Debian's headless Chromium; install it where we can (root + apt).
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "[test] installing Debian's chromium for the dashboard test"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "[test] chromium could not be installed; the browser test will be skipped"
fi
# The optimizers' CUDA kernels are Triton; CUDA builds of torch ship it. On a CPU build, add it
# without its dependencies so that its interpreter runs the kernels' tests on the CPU.
if ! .venv/bin/python -c "import triton" >/dev/null 2>&1; then
  echo "[test] installing triton (no dependencies) for the optimizers' kernel tests"
  .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps triton \
    || echo "[test] triton could not be installed; the kernel tests will be skipped"
fi
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# Two pytest workers, each module whole in one of them (its Ray, cluster or browser starts once),
# the longest modules first (tests/conftest.py LONGEST_FIRST; xdist's reordering by size is off).
# PYTEST_WORKERS=0: one process.
workers=${PYTEST_WORKERS:-2}
if [ "$workers" = 0 ]; then
  exec .venv/bin/python -m pytest "$@"
fi
exec .venv/bin/python -m pytest -n "$workers" --dist loadscope --no-loadscope-reorder "$@"
