#!/usr/bin/env bash
# The GPU checks in one script, meant to take under 8 minutes on one H200 where a CUDA torch and
# the dependencies are installed already (downloading torch takes longer): it sets up a virtual
# environment, then
#   1. the CUDA tests: optimizers on CUDA against their CPU results, the Triton kernels, the
#      training step / evaluation / data on the GPU (tests/test_optim_cuda.py, test_optim_triton.py,
#      test_gpu_*.py);
#   2. bench optim on CUDA, with the targets LAMB <= 1.5x and LANS <= 2x AdamW (fused);
#   3. a 1-worker bf16 SQuAD run, its driver killed (SIGKILL) mid-run and the run started again:
#      it resumes, and the records hold each evaluation once;
#   4. an fp16 two-phase MLM run;
#   5. several workers: with 2 or more GPUs a 2-worker NCCL run; with one GPU, the refusals that
#      keep two ranks off one GPU;
#   6. bench train on CUDA;
# and prints one summary, a PASS / FAIL / SKIP line per check. Exit status 0 when nothing failed.
#
#   bash scripts/gpu_check.sh             # OUT=./gpu_check_out unless $OUT is set
#   bash scripts/gpu_check.sh --dry-run   # print what it would run; runs nothing
#
#   GPU_VENV  the virtual environment (default /tmp/gpu_venv; ./.venv is used instead when its
#             torch has CUDA and scaling_study imports from this checkout)
#   PYTHON    the interpreter a new environment is made from (default python3)
# With a CUDA build of torch installed for $PYTHON the environment sees it (--system-site-packages);
# otherwise pip installs torch from PyPI (its Linux wheels are CUDA builds) first. Safe to run
# again: each check writes its own folder under $OUT afresh.
set -u
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=$(mkdir -p "${OUT:-./gpu_check_out}" && cd "${OUT:-./gpu_check_out}" && pwd)
GPU_VENV=${GPU_VENV:-/tmp/gpu_venv}
PYTHON=${PYTHON:-python3}
DRY=0
[ "${1:-}" = "--dry-run" ] && DRY=1
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false RAY_DISABLE_USAGE_STATS=1
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"  # this checkout, whatever is installed
START=$(date +%s)
SUMMARY=()
PY=""

say() { echo "[gpu_check $(( $(date +%s) - START ))s] $*"; }
result() {  # STATUS NAME DETAIL
  SUMMARY+=("$(printf '%-4s  %-40s  %s' "$1" "$2" "$3")")
  say "$1 $2${3:+: $3}"
}
cli() { "$PY" -m scaling_study.cli "$@"; }  # in this shell; under `timeout`: "$PY" -m scaling_study.cli
show() { echo "  would run: $*"; }
# run_logged SECONDS LOG CMD...: CMD under a timeout, output to LOG (and its tail on failure)
run_logged() {
  local seconds=$1 log=$2; shift 2
  timeout --kill-after=15 "$seconds" "$@" >"$log" 2>&1
  local rc=$?
  [ $rc -eq 124 ] && echo "(timed out after ${seconds}s)" >>"$log"
  [ $rc -ne 0 ] && tail -n 25 "$log" | sed 's/^/    | /'
  return $rc
}

gpu_count() {  # without the venv: nvidia-smi, else any torch that is there
  if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true
  else
    "$PYTHON" -c "import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)" 2>/dev/null || echo 0
  fi
}

# --- set-up -----------------------------------------------------------------------------------
venv_ok() {  # PYTHON: CUDA torch, the dependencies (the packaged model too), scaling_study from here
  "$1" - "$ROOT" >/dev/null 2>&1 <<'EOF'
import os, sys
import torch, ray, transformers, pytest, pandas, scaling_study
assert torch.version.cuda, "torch without CUDA"
assert os.path.realpath(os.path.dirname(os.path.dirname(scaling_study.__file__))) == os.path.realpath(sys.argv[1])
from scaling_study.models import load_tokenizer
load_tokenizer("default")
EOF
}

setup() {
  if [ -x "$ROOT/.venv/bin/python" ] && venv_ok "$ROOT/.venv/bin/python"; then
    PY="$ROOT/.venv/bin/python"; result PASS "set-up" "using $PY"; return 0
  fi
  PY="$GPU_VENV/bin/python"
  if [ -x "$PY" ] && venv_ok "$PY"; then result PASS "set-up" "reusing $GPU_VENV"; return 0; fi
  local log="$OUT/setup.log"; : >"$log"
  if [ ! -x "$PY" ]; then
    if "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.version.cuda else 1)" >/dev/null 2>&1; then
      say "creating $GPU_VENV on $PYTHON's CUDA torch (--system-site-packages)"
      "$PYTHON" -m venv --system-site-packages "$GPU_VENV" >>"$log" 2>&1
    else
      "$PYTHON" -m venv "$GPU_VENV" >>"$log" 2>&1
    fi
  fi
  # The checkout is on PYTHONPATH: where the system has every dependency, nothing is installed
  # (and nothing needs the network).
  if ! venv_ok "$PY"; then
    local pip=("$PY" -m pip install -q --disable-pip-version-check --retries 1 --timeout 30)
    if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.version.cuda else 1)" >/dev/null 2>&1; then
      say "installing torch (PyPI's CUDA build) into $GPU_VENV"
      run_logged 900 "$OUT/setup_torch.log" "${pip[@]}" torch
    fi
    say "installing scaling_study[test] (editable) into $GPU_VENV"
    run_logged 600 "$OUT/setup_pip.log" "${pip[@]}" -e ".[test]"
  fi
  if venv_ok "$PY"; then
    result PASS "set-up" "$GPU_VENV: $("$PY" -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda)')"
    return 0
  fi
  result FAIL "set-up" "$GPU_VENV lacks a CUDA torch or a dependency (see $OUT/setup*.log)"
  return 1
}

# --- 1. the CUDA tests ------------------------------------------------------------------------
check_tests() {
  local log="$OUT/pytest.log" tests=(tests/test_optim_cuda.py tests/test_optim_triton.py tests/test_gpu_*.py)
  if [ $DRY -eq 1 ]; then show "$PY -m pytest -q ${tests[*]}"; return; fi
  run_logged 240 "$log" "$PY" -m pytest -q -p no:cacheprovider "${tests[@]}"
  local rc=$? line
  line=$(grep -E '[0-9]+ (passed|failed)' "$log" | tail -n 1)
  [ $rc -eq 0 ] && result PASS "CUDA tests" "$line" || result FAIL "CUDA tests" "${line:-exit $rc} ($log)"
}

# --- 2. bench optim ---------------------------------------------------------------------------
check_bench_optim() {
  local log="$OUT/bench_optim.log" csv="$OUT/bench_optim.csv"
  local cmd=(bench optim --device cuda --rounds 3 --steps 20 --warmup 3 --csv "$csv")
  if [ $DRY -eq 1 ]; then show "scaling-study ${cmd[*]}  (targets: lamb <= 1.5x, lans <= 2x adamw:fused)"; return; fi
  rm -f "$csv"
  run_logged 240 "$log" "$PY" -m scaling_study.cli "${cmd[@]}"
  local rc=$?
  if [ $rc -ne 0 ]; then result FAIL "bench optim" "exit status $rc ($log)"; return; fi
  sed -n '/^optimizer/,$p' "$log"
  local name limit ratio name_limit
  for name_limit in lamb:1.5 lans:2.0; do
    name=${name_limit%%:*}; limit=${name_limit##*:}
    ratio=$("$PY" - "$csv" "$name" <<'EOF'
import csv, sys
rows = {r["optimizer"]: r for r in csv.DictReader(open(sys.argv[1]))}
print(rows[sys.argv[2]]["x_adamw:fused"].split()[0] if sys.argv[2] in rows else "missing")
EOF
)
    if [ "$ratio" != "missing" ] && "$PY" -c "import sys; sys.exit(0 if float('$ratio') <= $limit else 1)"; then
      result PASS "bench optim: $name step <= ${limit}x AdamW" "${ratio}x AdamW fused (median of rounds)"
    else
      result FAIL "bench optim: $name step <= ${limit}x AdamW" "${ratio}x AdamW fused ($csv)"
    fi
  done
}

# --- 3. bf16 SQuAD, driver killed, run again -----------------------------------------------------
SQUAD=(jobs/quickstart.yaml --set model.name=default --set scaling.num_workers=1 --set scaling.use_gpu=true
       --set train.precision=bf16 --set train.per_worker_batch=32 --set train.global_batch=32
       --set train.steps=300 --set eval.every_steps=50 --set eval.target=null --set data.max_eval_examples=64
       --set output.max_failures=0 --set output.checkpoints_to_keep=2)

records_rows() { [ -f "$1" ] && echo $(( $(wc -l <"$1") - 1 )) || echo 0; }

check_squad_resume() {
  local name=gpu_squad_bf16 runs="$OUT/runs" data="$OUT/data"
  local run=(run "${SQUAD[@]}" --set "data.dir=$data" --out "$runs" --name "$name")
  if [ $DRY -eq 1 ]; then
    show "scaling-study ${run[*]}   (in its own process group; SIGKILL when the first record is written)"
    show "scaling-study ${run[*]}   (again: resumes; records hold steps 50..300 once each)"
    return
  fi
  rm -rf "${runs:?}/$name"
  setsid "$PY" -m scaling_study.cli "${run[@]}" >"$OUT/squad_first.log" 2>&1 &
  local pid=$! waited=0
  while kill -0 "$pid" 2>/dev/null && [ "$(records_rows "$runs/$name/records.csv")" -lt 1 ] && [ $waited -lt 2400 ]; do
    sleep 0.1; waited=$((waited + 1))
  done
  if ! kill -0 "$pid" 2>/dev/null; then
    wait "$pid"
    result FAIL "bf16 SQuAD: killed and resumed" "the run ended (exit $?) before it could be killed ($OUT/squad_first.log)"
    return
  fi
  local at; at=$(records_rows "$runs/$name/records.csv")
  kill -KILL "$pid"; sleep 2; kill -KILL -- "-$pid" 2>/dev/null  # then what it started (Ray's processes)
  wait "$pid" 2>/dev/null
  say "killed the driver with $at record(s) written; running it again"
  if ! run_logged 300 "$OUT/squad_again.log" "$PY" -m scaling_study.cli "${run[@]}"; then
    result FAIL "bf16 SQuAD: killed and resumed" "the second run failed ($OUT/squad_again.log)"; return
  fi
  local verdict
  verdict=$("$PY" - "$runs/$name/records.csv" "$OUT/squad_again.log" <<'EOF'
import sys, pandas as pd
rec = pd.read_csv(sys.argv[1]); log = open(sys.argv[2]).read()
steps, want = list(rec["step"]), list(range(50, 301, 50))
problems = [f"steps {steps}, expected {want}"] if steps != want else []
problems += [] if "resumed at phase 1, step" in log else ["no 'resumed at' line in the second run"]
problems += [] if set(rec["device"]) == {"cuda"} else [f"device {set(rec['device'])}"]
problems += [] if rec["train_time_s"].is_monotonic_increasing else ["train_time_s not increasing"]
print("; ".join(problems) if problems else f"steps {steps[0]}..{steps[-1]} once each, resumed, f1 {rec['f1'].iloc[-1]:.1f}")
sys.exit(1 if problems else 0)
EOF
)
  [ $? -eq 0 ] && result PASS "bf16 SQuAD: killed and resumed" "$verdict" \
               || result FAIL "bf16 SQuAD: killed and resumed" "$verdict"
}

# --- 4. fp16 MLM ----------------------------------------------------------------------------------
check_mlm_fp16() {
  local name=gpu_mlm_fp16 runs="$OUT/runs"
  local run=(run jobs/mlm_two_phase.yaml --set scaling.num_workers=1 --set scaling.use_gpu=true
             --set train.precision=fp16 --set train.phases.0.steps=40 --set train.phases.1.steps=10
             --set eval.every_steps=10 --set eval.target=null --set output.max_failures=0
             --set "data.dir=$OUT/data" --out "$runs" --name "$name")
  if [ $DRY -eq 1 ]; then show "scaling-study ${run[*]}"; return; fi
  rm -rf "${runs:?}/$name"
  run_logged 240 "$OUT/mlm.log" "$PY" -m scaling_study.cli "${run[@]}"
  local rc=$?
  if [ $rc -ne 0 ]; then result FAIL "fp16 MLM, two phases" "exit status $rc ($OUT/mlm.log)"; return; fi
  local verdict
  verdict=$("$PY" - "$runs/$name/records.csv" <<'EOF'
import math, sys, pandas as pd
rec = pd.read_csv(sys.argv[1])
ok = list(rec["step"]) == [10, 20, 30, 40, 50] and list(rec["phase"])[-1] == 2 and set(rec["device"]) == {"cuda"} \
     and all(math.isfinite(x) for x in rec["mlm_acc"]) and all(math.isfinite(x) for x in rec["loss"])
print(f"steps {list(rec['step'])}, phases {sorted(set(rec['phase']))}, mlm_acc {rec['mlm_acc'].iloc[-1]:.3f}, "
      f"{rec['throughput'].iloc[-1]:.0f} samples/s")
sys.exit(0 if ok else 1)
EOF
)
  [ $? -eq 0 ] && result PASS "fp16 MLM, two phases" "$verdict" || result FAIL "fp16 MLM, two phases" "$verdict"
}

# --- 5. several workers ---------------------------------------------------------------------------
check_workers() {
  local gpus=$1 name=gpu_two_workers runs="$OUT/runs"
  if [ "$gpus" -ge 2 ]; then
    local run=(run "${SQUAD[@]}" --set "data.dir=$OUT/data" --set scaling.num_workers=2 --set train.global_batch=64
               --set train.steps=60 --set eval.every_steps=30 --out "$runs" --name "$name")
    if [ $DRY -eq 1 ]; then show "scaling-study ${run[*]}"; return; fi
    rm -rf "${runs:?}/$name"
    if run_logged 300 "$OUT/two_workers.log" "$PY" -m scaling_study.cli "${run[@]}" \
       && "$PY" -c "import pandas as pd, sys; r = pd.read_csv('$runs/$name/records.csv'); sys.exit(0 if list(r['step']) == [30, 60] and set(r['num_workers']) == {2} else 1)"; then
      result PASS "2 workers, NCCL" "records at steps 30, 60 from 2 GPU workers"
    else
      result FAIL "2 workers, NCCL" "see $OUT/two_workers.log"
    fi
    return
  fi
  result SKIP "2 workers, NCCL" "$gpus GPU here: NCCL runs one rank per GPU (and bench train's 2-process DDP row too)"
  local share=(check jobs/quickstart.yaml --set scaling.use_gpu=true --set scaling.num_workers=2
               --set scaling.resources_per_worker.GPU=0.5)
  local whole=(run "${SQUAD[@]}" --set "data.dir=$OUT/data" --set scaling.num_workers=2 --set train.global_batch=64
               --out "$runs" --name gpu_two_on_one)
  if [ $DRY -eq 1 ]; then show "scaling-study ${share[*]}   (must refuse: NCCL cannot run)"; \
                          show "scaling-study ${whole[*]}   (must refuse: the cluster has 1 GPU)"; return; fi
  cli "${share[@]}" >"$OUT/share_one_gpu.log" 2>&1
  local rc=$?
  [ $rc -eq 2 ] && grep -q "resources_per_worker.GPU: 0.5 GPU per worker with 2 workers" "$OUT/share_one_gpu.log" \
    && result PASS "2 workers sharing 1 GPU refused" "$(grep -o 'scaling.resources_per_worker.GPU:.*NCCL cannot run' "$OUT/share_one_gpu.log")" \
    || result FAIL "2 workers sharing 1 GPU refused" "exit $rc ($OUT/share_one_gpu.log)"
  run_logged 180 "$OUT/two_on_one.log" "$PY" -m scaling_study.cli "${whole[@]}" >/dev/null
  rc=$?
  [ $rc -ne 0 ] && grep -q "but the cluster has 1" "$OUT/two_on_one.log" \
    && result PASS "2 workers x 1 GPU on 1 GPU refused" "before any worker starts (the cluster has 1 GPU)" \
    || result FAIL "2 workers x 1 GPU on 1 GPU refused" "exit $rc ($OUT/two_on_one.log)"
}

# --- 6. bench train -------------------------------------------------------------------------------
check_bench_train() {
  local gpus=$1 workers=(1)
  [ "$gpus" -ge 2 ] && workers=(1 2)
  local cmd=(bench train --device cuda --steps 20 --rounds 1 --workers "${workers[@]}")
  if [ $DRY -eq 1 ]; then show "scaling-study ${cmd[*]}"; return; fi
  if run_logged 300 "$OUT/bench_train.log" "$PY" -m scaling_study.cli "${cmd[@]}"; then
    sed -n '/^mode (median/,$p' "$OUT/bench_train.log"
    result PASS "bench train --device cuda" "$(grep -E '^Ray Train, 1 worker ' "$OUT/bench_train.log" | awk '{print $(NF-1) " samples/s, " $NF " of plain"}')"
  else
    result FAIL "bench train --device cuda" "see $OUT/bench_train.log"
  fi
}

summary() {
  local took=$(( $(date +%s) - START ))
  {
    echo
    echo "== GPU check summary ($took s; outputs in $OUT) =="
    printf '%s\n' "${SUMMARY[@]}"
  } | tee "$OUT/summary.txt"
  [ $took -gt 480 ] && echo "note: took more than 8 minutes"
}

# --- main -----------------------------------------------------------------------------------------
GPUS=$(gpu_count)
if [ $DRY -eq 1 ]; then
  echo "dry run: $GPUS GPU(s) visible here; outputs would go to $OUT"
  PY="$GPU_VENV/bin/python"
  show "set up $GPU_VENV (or use ./.venv where its torch has CUDA), pip install -e .[test]"
  check_tests; check_bench_optim; check_squad_resume; check_mlm_fp16
  check_workers "$([ "$GPUS" -ge 2 ] && echo 2 || echo 1)"; check_bench_train "$GPUS"
  exit 0
fi
if [ "$GPUS" -lt 1 ]; then
  echo "gpu_check: no CUDA GPU here (nvidia-smi / torch see none), so nothing was checked." >&2
  echo "  The CPU test suite covers the rest (tests/test_gpu_rules.py, tests/test_gpu_async.py)." >&2
  echo "  See what would run: bash scripts/gpu_check.sh --dry-run" >&2
  exit 3
fi
say "$GPUS GPU(s); outputs in $OUT"
if setup; then
  say "$("$PY" -c 'import torch; print(torch.cuda.get_device_name(0), "| torch", torch.__version__)')"
  check_tests
  check_bench_optim
  check_squad_resume
  check_mlm_fp16
  check_workers "$GPUS"
  check_bench_train "$GPUS"
fi
summary
printf '%s\n' "${SUMMARY[@]}" | grep -q '^FAIL' && exit 1
exit 0
