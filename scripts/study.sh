#!/usr/bin/env bash
# Runs every experiment of report/study.yaml (the study of report/REPORT.md) on this machine,
# with the step budgets it names, then rebuilds the report. Two lanes share one local Ray head:
# each lane runs one experiment at a time with one trial at a time, so both cores stay busy (1 CPU
# per trial) without the idle core that an odd number of trials leaves. A trial's numbers do not depend on
# the lane, the head or the order: each trial is seeded and runs on 1 thread; the search too
# runs one trial at a time, so the points Optuna proposes do not depend on which finishes first.
#
#   bash scripts/study.sh              # prints the trials and a bound on the time first
#   bash scripts/study.sh --resume     # continue after an interruption (finished trials stay)
#   bash scripts/study.sh addsub ablation_wd   # only these experiments (the study's order)
#   bash scripts/study.sh --resume addsub      # the same, continuing
#
# Runs that are the same resolved config and seed in several experiments (the paper's recipe is
# the baseline of most ablations) are trained once: every sweep shares the run store
# results/.reuse (grok/reuse.py), keyed on the whole config and the training code, and a replayed
# trial says in its reports where it came from (`reused_from`).
#
# The budgets are smaller than the assignment's 1e5 steps so that the study fits in 2.5 hours; the
# experiment files keep the full budget (drop the --set train.steps=... to run it).
set -euo pipefail
cd "$(dirname "$0")/.."
export RAY_AUTH_MODE=${RAY_AUTH_MODE:-disabled}
AGAIN=""
[[ "${1:-}" == "--resume" ]] && { AGAIN="--resume"; shift; }

# One line per experiment: its file and the arguments of its budget, from the study file.
mapfile -t QUEUE < <(python -m plotting.study report/study.yaml "$@")
(( ${#QUEUE[@]} )) || { echo "error: report/study.yaml lists no experiment" >&2; exit 2; }
python -m plotting.study report/study.yaml --estimate "$@"

mkdir -p results
ray start --head --num-cpus=2 --include-dashboard=false >results/study-ray.log 2>&1
trap 'ray stop >/dev/null 2>&1 || true' EXIT
echo 0 >results/study-next

lane() {  # takes the next experiment off the queue until none is left
  while true; do
    local i
    i=$(flock results/study-next bash -c 'i=$(cat results/study-next); echo $((i + 1)) >results/study-next; echo $i')
    (( i < ${#QUEUE[@]} )) || return 0
    local args=(${QUEUE[$i]})
    local name  # the experiment's results folder: its file's `name:` (else the file's stem)
    name=$(sed -n 's/^name: *\([A-Za-z0-9_.-]*\).*/\1/p' "${args[0]}" | head -1)
    name=${name:-$(basename "${args[0]}" .yaml)}
    echo "$(date +%T) lane $1: ${QUEUE[$i]}"
    # shellcheck disable=SC2086
    python tune_main.py --address auto --max-concurrent 1 --reuse results/.reuse $AGAIN "${args[@]}" \
      >"results/study-$name.log" 2>&1 || echo "$(date +%T) lane $1: $name exited $?"
    # Its reports and parameters into the repository's archive, as soon as it is done.
    python -m grok.archive "results/$name" --out report/data || true
  done
}
lane 1 & lane 2 & wait
echo "$(date +%T) all done"
# Weights only (a few MB each), that infer.py loads: the sanity models (the report shows what
# they generate) and one model each for add/sub and division, from the experiments run here.
ran() {  # whether this invocation's queue has experiment $1
  local q
  for q in "${QUEUE[@]}"; do [[ "$q " == "experiments/$1.yaml "* ]] && return 0; done
  return 1
}
for name in sanity_memorize sanity_mask3; do
  if ran "$name"; then python -m grok.export "results/$name" --out "report/weights/$name"; fi
done
if ran addsub; then
  python -m grok.export results/addsub --trial "op=add,layers=2,p=97,seed=0" --out report/weights/addsub
fi
if ran division_grokking; then
  python -m grok.export results/division_grokking --trial seed=0 --out report/weights/division_grokking
fi
python -m plotting.report report/data --out report/  # the archive: what a fresh clone rebuilds from
