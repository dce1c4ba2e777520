#!/usr/bin/env bash
# HalfCheetah-v4 device screen (issue 11), from the repository root on a lent 16-core machine:
#   DEVICE=cuda OUTROOT=/tmp/screen bash benchmarks/results/search/halfcheetah/screen_device/run.sh
# Wave 1: candidates c01-c05 (c01-c04 with DEVICE=cpu), seeds 10-12 at 1M steps, 15 runs at once (one torch thread each).
# Wave 2 (DEVICE=cuda only), decided by the rule in README.md: a candidate whose three seeds' mean reaches 6600 is run on
# new seeds 13-17; the shipped entry runs on seeds 10-12 as the control; the remaining places go to c06-c09.
set -u
PY=${PYTHON:-python}
DEVICE=${DEVICE:-cpu}
OUTROOT=${OUTROOT:-/tmp/screen}
D=benchmarks/results/search/halfcheetah/screen_device
mkdir -p "$OUTROOT"
launch() {  # candidate folder (control: the shipped entry), seeds...
  local c=$1; shift
  $PY -m benchmarks.run --no-ray --algos clippedppo --envs HalfCheetah-v4 --seeds "$@" --jobs $# --device "$DEVICE" \
    --conf "$D/$c/candidate.yml" --out "$OUTROOT/$c" > "$OUTROOT/$c.log" 2>&1 &
}
if [ "$DEVICE" = cuda ]; then wave1="c01_kl_penalty c02_walker_recipe c03_gamma099 c04_nsteps2048 c05_kl_penalty_dtarg002"
else wave1="c01_kl_penalty c02_walker_recipe c03_gamma099 c04_nsteps2048"; fi
echo "wave 1 ($DEVICE): $wave1 $(date -u +%T)"
for c in $wave1; do launch "$c" 10 11 12; done
wait
[ "$DEVICE" = cuda ] || exit 0
best=$($PY - "$OUTROOT" $wave1 <<'PY'
import glob, sys
import numpy as np
root, names = sys.argv[1], sys.argv[2:]
means = {}
for name in names:
    finals = [float(np.load(f)["results"][-1].mean()) for f in glob.glob(f"{root}/{name}/clippedppo/HalfCheetah-v4_*/evaluations.npz")]
    if len(finals) == 3:
        means[name] = float(np.mean(finals))
    print(name, [round(x) for x in finals], file=sys.stderr)
passed = {k: v for k, v in means.items() if v >= 6600}
print(max(passed, key=passed.get) if passed else "")
PY
)
echo "wave 2: passed: '${best}' $(date -u +%T)"
launch control 10 11 12
if [ -n "$best" ]; then
  launch "$best" 13 14 15 16 17
  for c in c06_clip02 c07_ent_schedule_normobs; do launch "$c" 10 11 12; done
else
  for c in c06_clip02 c07_ent_schedule_normobs c08_batch128 c09_gae_lambda095; do launch "$c" 10 11 12; done
fi
wait
echo "done $(date -u +%T)"
