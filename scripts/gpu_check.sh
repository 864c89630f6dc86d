#!/usr/bin/env bash
# The GPU check: the CUDA path on one GPU, offline, in at most $GPU_CHECK_DEADLINE seconds (360).
#
#   bash scripts/gpu_check.sh              # outputs in ./gpu_check_out (or $OUT)
#   bash scripts/gpu_check.sh --dry-run    # no GPU needed: shows the plan, checks the plumbing
#   bash scripts/gpu_check.sh --install    # first pip-installs Ray and pytest (needs a registry)
#
# It needs a visible CUDA GPU (torch.cuda.is_available() and a device count >= 1): without one
# it says so and exits 3. It prints torch, CUDA, driver and GPU, then runs, each under its own
# time budget and all under the deadline:
#   core (no Ray; `python -m scaling_study.bench.gpu_check plan` lists them): the product's step
#     for SQuAD bf16 and MLM fp16; SIGKILL-and-resume through the checkpoint code; no host sync
#     in a BERT-base step; the optimizers on CUDA vs the CPU; bench optim vs AdamW(fused); a
#     one-rank NCCL DDP with the noise-scale hook; bench train --no-ray at base and large (MFU);
#   CUDA tests (pytest, where it imports): any skipped CUDA test fails the check;
#   Ray (where Ray imports): a bf16 SQuAD run killed and resumed by Ray Train, an fp16 MLM run.
# Each verdict is appended to $OUT/summary.txt the moment it is known, so a killed check still
# leaves the ones before it. What does not run says SKIPPED (no Ray, no pytest, deadline) and
# counts as not passed. Exit status: 0 all passed, 1 something failed, 2 nothing failed but
# something was skipped, 3 no GPU.
#
# Nothing is installed unless --install: the machine's own torch (with CUDA), Triton,
# transformers, pandas, pyarrow and PyYAML are all the core needs; this checkout is imported
# through PYTHONPATH. PYTHON picks the interpreter (default python3).
set -u
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-python3}
DEADLINE=${GPU_CHECK_DEADLINE:-360}
MODE=run
case "${1:-}" in
  --dry-run) MODE=dry ;;
  --install) MODE=install ;;
  "") ;;
  *) echo "gpu_check: unknown option ${1}; valid: --dry-run, --install" >&2; exit 2 ;;
esac
OUT=$(mkdir -p "${OUT:-./gpu_check_out}" && cd "${OUT:-./gpu_check_out}" && pwd)
SUMMARY="$OUT/summary.txt"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false RAY_DISABLE_USAGE_STATS=1
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
START=$(date +%s)
elapsed() { echo $(( $(date +%s) - START )); }
left() { echo $(( DEADLINE - $(elapsed) )); }

# verdict STATUS NAME DETAIL: one summary line, written at once (a kill later leaves it there)
verdict() {
  local line
  line=$(printf '%-8s %-26s %s' "$1" "$2" "$3")
  echo "$line" >>"$SUMMARY"
  echo "[gpu_check $(elapsed)s] $line"
}

# bounded BUDGET LOG CMD...: CMD under min(BUDGET, time left), output to LOG; its exit status
bounded() {
  local budget=$1 log=$2 rc; shift 2
  local t; t=$(left); [ "$t" -gt "$budget" ] && t=$budget
  timeout --kill-after=10 "$t" "$@" >"$log" 2>&1
  rc=$?
  [ $rc -eq 124 ] || [ $rc -eq 137 ] && echo "(stopped after ${t}s)" >>"$log"
  return $rc
}

core() {  # each core check in its own process, under its budget
  local name budget what log rc line checks
  if ! checks=$("$PY" -m scaling_study.bench.gpu_check plan 2>"$OUT/plan.log"); then
    verdict FAIL "core" "cannot list the checks ($OUT/plan.log)"; return
  fi
  while read -r name budget what; do
    if [ "$MODE" = dry ]; then
      echo "  would run (<= ${budget}s): $PY -m scaling_study.bench.gpu_check run $name --out $OUT   # $what"
      continue
    fi
    if [ "$(left)" -lt 15 ]; then verdict SKIPPED "$name" "(deadline: ${DEADLINE}s reached)"; continue; fi
    log="$OUT/$name.log"
    bounded "$budget" "$log" "$PY" -m scaling_study.bench.gpu_check run "$name" --out "$OUT"
    rc=$?
    line=$(grep -E "^(PASS|FAIL) $name: " "$log" | tail -n 1)
    if [ -n "$line" ]; then
      verdict "${line%% *}" "$name" "${line#* $name: }"
    elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
      verdict FAIL "$name" "timed out ($log)"
    else
      verdict FAIL "$name" "exit status $rc, no verdict ($log)"
    fi
  done <<<"$checks"
}

CUDA_TESTS=(tests/test_optim_cuda.py tests/test_gpu_cuda.py tests/test_sync_audit.py)
cuda_tests() {  # every test here needs CUDA: a skip means it did not run
  if ! "$PY" -c "import pytest" >/dev/null 2>&1; then verdict SKIPPED "CUDA tests" "(no pytest)"; return; fi
  if [ "$MODE" = dry ]; then echo "  would run: $PY -m pytest -rs ${CUDA_TESTS[*]}   # any skip fails"; return; fi
  if [ "$(left)" -lt 30 ]; then verdict SKIPPED "CUDA tests" "(deadline: ${DEADLINE}s reached)"; return; fi
  local log="$OUT/cuda_tests.log" rc tally
  bounded 120 "$log" "$PY" -m pytest -q -rs -p no:cacheprovider "${CUDA_TESTS[@]}"
  rc=$?
  tally=$(grep -E '[0-9]+ (passed|failed|skipped)' "$log" | tail -n 1)
  if [ $rc -eq 0 ] && ! grep -qE '[0-9]+ skipped' <<<"$tally"; then verdict PASS "CUDA tests" "$tally"
  else verdict FAIL "CUDA tests" "${tally:-exit status $rc} ($log)"; fi
}

ray_runs() {  # Ray Train on the GPU: a bf16 SQuAD run killed and resumed, an fp16 MLM run
  local name=gpu_squad_bf16 runs="$OUT/runs"
  local squad=(run jobs/quickstart.yaml --set scaling.num_workers=1 --set scaling.use_gpu=true
               --set train.precision=bf16 --set train.per_worker_batch=32 --set train.global_batch=32
               --set train.steps=100 --set eval.every_steps=25 --set eval.target=null
               --set output.max_failures=0 --set "data.dir=$OUT/data" --out "$runs" --name "$name")
  local mlm=(run jobs/mlm_two_phase.yaml --set scaling.num_workers=1 --set scaling.use_gpu=true
             --set train.precision=fp16 --set train.phases.0.steps=40 --set train.phases.1.steps=10
             --set eval.every_steps=10 --set eval.target=null --set output.max_failures=0
             --set "data.dir=$OUT/data" --out "$runs" --name gpu_mlm_fp16)
  if ! "$PY" -c "import ray.train" >/dev/null 2>&1; then
    verdict SKIPPED "Ray: SQuAD killed+resumed" "(no Ray)"; verdict SKIPPED "Ray: fp16 MLM run" "(no Ray)"; return
  fi
  if [ "$MODE" = dry ]; then
    echo "  would run: scaling-study ${squad[*]}   (SIGKILL at the first record, then again: it resumes)"
    echo "  would run: scaling-study ${mlm[*]}"; return
  fi
  rm -rf "${runs:?}/$name"
  setsid "$PY" -m scaling_study.cli "${squad[@]}" >"$OUT/ray_squad_first.log" 2>&1 &
  local pid=$! waited=0
  while kill -0 $pid 2>/dev/null && [ ! -s "$runs/$name/records.csv" ] && [ $waited -lt 900 ] && [ "$(left)" -gt 60 ]; do
    sleep 0.2; waited=$((waited + 1))
  done
  kill -KILL -- -$pid 2>/dev/null; wait $pid 2>/dev/null
  if [ ! -s "$runs/$name/records.csv" ]; then
    verdict FAIL "Ray: SQuAD killed+resumed" "no record before the kill ($OUT/ray_squad_first.log)"
  elif bounded 150 "$OUT/ray_squad_again.log" "$PY" -m scaling_study.cli "${squad[@]}" \
       && grep -q "resumed at phase 1, step" "$OUT/ray_squad_again.log"; then
    verdict PASS "Ray: SQuAD killed+resumed" "$(grep -o 'resumed at phase 1, step [0-9]*' "$OUT/ray_squad_again.log")"
  else
    verdict FAIL "Ray: SQuAD killed+resumed" "see $OUT/ray_squad_again.log"
  fi
  if bounded 150 "$OUT/ray_mlm.log" "$PY" -m scaling_study.cli "${mlm[@]}"; then
    verdict PASS "Ray: fp16 MLM run" "$(tail -n 1 "$runs/gpu_mlm_fp16/records.csv")"
  else
    verdict FAIL "Ray: fp16 MLM run" "see $OUT/ray_mlm.log"
  fi
}

install() {  # only with --install: Ray and pytest for the parts that need them
  local venv="$OUT/venv"
  "$PY" -m venv --system-site-packages "$venv" && PY="$venv/bin/python" \
    && "$PY" -m pip install -q --disable-pip-version-check "ray[train,tune]>=2.60,<3" "pytest>=8" pytest-timeout \
    || { echo "gpu_check: --install failed (no package registry here?); going on without" >&2; PY=${PYTHON:-python3}; }
}

: >"$SUMMARY"
if [ "$MODE" = dry ]; then
  echo "gpu_check --dry-run: the plan, with the interpreter $PY; outputs would go to $OUT; deadline ${DEADLINE}s"
  "$PY" -m scaling_study.bench.gpu_check gpu || echo "  (no GPU here: a real run would stop at this point, exit 3)"
  "$PY" -m scaling_study.bench.gpu_check plan --verify-imports >"$OUT/plan.txt" 2>&1 || { cat "$OUT/plan.txt"; exit 1; }
  head -n 1 "$OUT/plan.txt"
  core; cuda_tests; ray_runs
  echo "dry run: nothing was run"
  exit 0
fi
[ "$MODE" = install ] && install
if ! INFO=$("$PY" -m scaling_study.bench.gpu_check gpu); then
  echo "gpu_check: $INFO" >&2
  echo "gpu_check: needs a visible CUDA GPU; nothing was checked (see the plan: bash scripts/gpu_check.sh --dry-run)" >&2
  exit 3
fi
echo "[gpu_check] $INFO; commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown); outputs in $OUT"
echo "# GPU check $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown): $INFO" >"$SUMMARY"
core
cuda_tests
ray_runs
passed=$(grep -c '^PASS' "$SUMMARY"); failed=$(grep -c '^FAIL' "$SUMMARY"); skipped=$(grep -c '^SKIPPED' "$SUMMARY")
echo "# $passed passed, $failed failed, $skipped skipped (not passed) in $(elapsed)s" >>"$SUMMARY"
echo; echo "== GPU check summary ($SUMMARY) =="; cat "$SUMMARY"
[ "$failed" -gt 0 ] && exit 1
[ "$skipped" -gt 0 ] && exit 2
exit 0
