#!/usr/bin/env bash
# The critical-batch study's repeats: seeds 1 and 2 at each batch's best learning rate found by
# the sweeps of search_spaces/critical_batch_{lamb,adamw}.yaml (seed 0), so that every point of
# the fit rests on three runs. Each batch's repeats are a sweep of their own (the shipped space
# with its batch and LR pinned, the seed swept, no ASHA: every repeat runs to the target), in
# sweeps/critical_batch_OPTIMIZER_seeds_bBATCH. Run after the optimizer's sweep; then report them all:
#   bash scripts/critical_batch_seeds.sh lamb [RESULTS...]   # RESULTS: default sweeps/critical_batch_lamb
#   bash scripts/critical_batch_seeds.sh adamw               # ~15 min each on 2 cores
#   scaling-study report sweeps/critical_batch_{lamb,adamw} sweeps/critical_batch_*_seeds_b* --out reports/critical_batch
set -euo pipefail
cd "$(dirname "$0")/.."
study=${SCALING_STUDY:-.venv/bin/scaling-study}
python=${PYTHON:-.venv/bin/python}
seeds=${SEEDS:-"1, 2"}
[ $# -ge 1 ] || { echo "usage: $0 lamb|adamw [RESULTS...]" >&2; exit 2; }
opt=$1
shift
results=("$@")
[ ${#results[@]} -gt 0 ] || results=("sweeps/critical_batch_$opt")
for r in "${results[@]}"; do
  [ -e "$r" ] || { echo "no $r: run scaling-study sweep search_spaces/critical_batch_$opt.yaml first" >&2; exit 2; }
done
report=$(mktemp -d)
trap 'rm -rf "$report"' EXIT
"$study" report "${results[@]}" --out "$report/out" > /dev/null
# Each batch's best setting (tables/steps_to_target.csv: `lr` is the swept, reference-batch LR).
"$python" - "$report/out/tables/steps_to_target.csv" > "$report/best.txt" <<'EOF'
import sys
import pandas as pd
table = pd.read_csv(sys.argv[1])
if (table["lr_column"] != "hp.optimizer.lr").any():
    sys.exit(f"{sys.argv[1]}: lr_column: expected hp.optimizer.lr (a sweep over optimizer.lr)")
for _, row in table.iterrows():
    print(int(row["global_batch"]), repr(float(row["lr"])))
EOF
while read -r batch lr; do
  echo "[seeds] $opt: batch $batch, LR $lr (at the reference batch), seeds [$seeds]"
  "$study" sweep "search_spaces/critical_batch_$opt.yaml" --set "name=critical_batch_${opt}_seeds_b$batch" \
    --set "parameters.train.global_batch.values=[$batch]" --set "parameters.optimizer.lr.values=[$lr]" \
    --set "parameters.train.seed={distribution: grid, values: [$seeds]}" --set "scheduler={name: fifo}"
done < "$report/best.txt"
