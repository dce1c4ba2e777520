#!/usr/bin/env bash
# Walker-walk screen (issue 11), from the repository root: `bash benchmarks/results/search/walker/screen/run.sh`.
# Stage 1: five variations of the shipped walker entry (the *.yml files here), seeds 0-2 at the full 1.25M steps.
# Stage 2: the two with the best mean final return on 5 NEW seeds (5-9), and the walker rows of two options of the
# options study (seeds 0-2). 15 runs at a time in stage 1, 16 in stage 2 (a 16-core machine, without Ray).
set -u
PY=${PYTHON:-python}
D=benchmarks/results/search/walker/screen
WALKER=dm_control/walker-walk-v0
for c in logstd wide wide_logstd lrdecay wide_logstd_lrdecay; do
  $PY -m benchmarks.run --no-ray --algos clippedppo --envs $WALKER --seeds 0 1 2 --jobs 3 --conf $D/$c.yml \
    --out $D/$c > $D/$c.log 2>&1 &
done
wait
best=$($PY - <<PYEOF
import json, pathlib, numpy as np
means = {}
for name in ["logstd", "wide", "wide_logstd", "lrdecay", "wide_logstd_lrdecay"]:
    out = pathlib.Path("$D") / name
    finals = [float(np.load(out / json.loads(p.read_text())["run_dir"] / "evaluations.npz")["results"][-1].mean())
              for p in sorted((out / "_runs").glob("*.json")) if json.loads(p.read_text())["status"] == "finished"]
    means[name] = float(np.mean(finals)) if len(finals) == 3 else float("-inf")
    print(name, finals, means[name], file=open("$D/stage1.txt", "a"))
print(" ".join(sorted(means, key=means.get, reverse=True)[:2]))
PYEOF
)
echo "stage 2: $best" >> $D/stage1.txt
for c in $best; do
  $PY -m benchmarks.run --no-ray --algos clippedppo --envs $WALKER --seeds 5 6 7 8 9 --jobs 5 --conf $D/$c.yml \
    --out $D/validation_$c > $D/validation_$c.log 2>&1 &
done
$PY -m benchmarks.options --no-ray --options recompute_advantages normalize_observations --envs $WALKER --seeds 0 1 2 \
  --jobs 6 --out benchmarks/results/options > $D/options_walker.log 2>&1 &
wait
echo done >> $D/stage1.txt
