#!/usr/bin/env bash
# The quickstart study, end to end on an embedded local Ray: set up, sweep (LAMB vs AdamW x LR on
# 1 and 2 workers, ASHA), the scaling/time-to-F1 report, and the best configuration as a job.
#   bash scripts/quickstart.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export TOKENIZERS_PARALLELISM=false
study="quickstart_$(date +%Y%m%d-%H%M%S)"
s=.venv/bin/scaling-study
$s sweep search_spaces/quickstart.yaml --set "name=$study"
$s report "sweeps/$study" --out reports/quickstart/ --title "Quickstart study: LAMB vs AdamW on 1 and 2 workers"
$s export "sweeps/$study" --metric f1 --out jobs/best.yaml
echo
echo "dashboard: $(pwd)/reports/quickstart/dashboard.html"
echo "best job:  $(pwd)/jobs/best.yaml   (run it: $s run jobs/best.yaml)"
echo "service:   $s serve   then open http://127.0.0.1:8300/studies/0:$study"
