#!/usr/bin/env bash
# HalfCheetah-v4 learning-rate screen (issue 11), from the repository root: `bash benchmarks/results/search/halfcheetah/lr_screen/run.sh`.
# Three candidates (../lr_4e-5, ../lr_6e-5, ../lr_lin8e-5: the Zoo's values with a larger learning rate), seeds 0-4 at
# the full 1M steps, all 15 runs at once (a 16-core machine, without Ray; one torch thread per run).
set -u
PY=${PYTHON:-python}
D=benchmarks/results/search/halfcheetah
for c in ${CANDIDATES:-lr_4e-5 lr_6e-5 lr_lin8e-5}; do
  $PY -m benchmarks.run --no-ray --algos clippedppo --envs HalfCheetah-v4 --seeds 0 1 2 3 4 --jobs 5 \
    --conf $D/$c/candidate.yml --out $D/$c > $D/lr_screen/$c.log 2>&1 &
done
wait
