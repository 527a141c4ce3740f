#!/usr/bin/env bash
# Reproduces the numbers of models/MODEL_CARD.md: the default model and its synthetic-only stage with the
# MedicoSAM 2D protocol (point and box start, 7 correction rounds) on the held-out test splits of the four
# 2D datasets in ../shared/data, and the GrabCut baseline from the same boxes.
#   scripts/evaluate-default-model.sh [OUT_DIR]     (default reports/default_model)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
out="${1:-reports/default_model}"
data="${MEDICOSAM_DATA:-$root/../shared/data}"
"$root/scripts/build.sh" medicosam >/dev/null
cli="${MEDICOSAM_BUILD_DIR:-$root/build}/apps/medicosam/medicosam"
sets=()
for d in kvasir_seg busi hc18_fetal_head ph2_dermoscopy; do sets+=(--data "$data/$d"); done

# Both models: Point, Box and 7 correction rounds (8 iterations), seed 0.
"$cli" eval --model models/medicosam_default.safetensors --model models/medicosam_synthetic_only.safetensors \
  "${sets[@]}" --split test --iterations 8 --out "$out/models"
# GrabCut from the same tight boxes (box start only: it has no point start), on the full-resolution image
# with 5 GrabCut iterations, the strongest setting we found for it.
"$cli" eval --baseline grabcut --grabcut-iterations 5 --grabcut-max-side 0 \
  "${sets[@]}" --split test --starts box --iterations 1 --out "$out/grabcut_box"
echo "reports: $out/models/summary.md $out/grabcut_box/summary.md"
