#!/usr/bin/env bash
# Float32 gradient fidelity at the paper's long shapes (issue #8): RHEL (float32 model, default settings)
# and all-float32 BPTT against float64 BPTT of the same model. Not a CI test: ~15-30 min on 2 cores and
# up to ~12 GiB for the float64 reference at L = 49,920.
#   bash benchmarks/fidelity/run.sh [OUT_DIR]      (default benchmarks/fidelity/results)
set -euo pipefail
out=${1:-benchmarks/fidelity/results}
mkdir -p "$out"
hamecho=${HAMECHO:-.venv/bin/hamecho}
common=(--blocks 6 --hidden 64 --state 16 --batch 4 --in-dim 6 --dtype float32 --json)
eigenworms=(--length 17984 --classes 5 --task classification)
ppg=(--length 49920 --classes 1 --task regression --output-step 128)
for hru in linear nonlinear; do
  $hamecho gradcheck --hru $hru "${common[@]}" "${eigenworms[@]}" > "$out/${hru}_eigenworms.json"
done
$hamecho gradcheck --hru nonlinear --step 0.1 "${common[@]}" "${eigenworms[@]}" > "$out/nonlinear_step0.1_eigenworms.json"
for hru in linear nonlinear; do
  $hamecho gradcheck --hru $hru "${common[@]}" "${ppg[@]}" > "$out/${hru}_ppg.json"
done
$hamecho gradcheck --hru nonlinear --step 0.1 "${common[@]}" "${ppg[@]}" > "$out/nonlinear_step0.1_ppg.json"
# Inside the stable region of the stability map (delta 0.1 at L = 1,000; delta 0.01 at L = 17,984):
$hamecho gradcheck --hru nonlinear --step 0.1 "${common[@]}" --length 1000 --classes 5 --task classification \
  > "$out/nonlinear_step0.1_L1000.json"
$hamecho gradcheck --hru nonlinear --step 0.01 "${common[@]}" "${eigenworms[@]}" > "$out/nonlinear_step0.01_eigenworms.json"
.venv/bin/python benchmarks/fidelity/summarize.py "$out"
