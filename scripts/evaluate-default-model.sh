#!/usr/bin/env bash
# Reproduces the numbers of models/MODEL_CARD.md: the default model with the MedicoSAM 2D protocol (point and
# box start, 7 correction rounds) on the held-out TEST splits of the seven 2D datasets in ../shared/data, next
# to the trivial filled-box baseline and GrabCut from the same boxes; the 3D propagation check on the MRI lesion
# volumes; automatic masks against the ground truth. The test splits are for this final evaluation only: every
# choice (steps, weights, checkpoint, AMG thresholds) is made on the val splits.
#   scripts/evaluate-default-model.sh [OUT_DIR]     (default reports/default_model)
# Environment: MEDICOSAM_DATA (default ../shared/data), MODEL (default models/medicosam_default.safetensors),
# SPLIT (default test; val for choices), AMG_LIMIT (first images per split for the AMG check, default 15; 0 = all).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
out="${1:-reports/default_model}"
data="${MEDICOSAM_DATA:-$root/../shared/data}"
model="${MODEL:-models/medicosam_default.safetensors}"
split="${SPLIT:-test}"
amg_limit="${AMG_LIMIT:-15}"
"$root/scripts/build.sh" medicosam >/dev/null
cli="${MEDICOSAM_BUILD_DIR:-$root/build}/apps/medicosam/medicosam"
# One object per connected component: the five single-structure sets. The organ sets (ids = the same structure
# in every image) are scored per structure (--instance-classes), the mean over structures as MedicoSAM does.
single=() organs=() all=()
for d in kvasir_seg busi hc18_fetal_head ph2_dermoscopy lgg_flair_mri; do single+=(--data "$data/$d"); done
for d in chaos_t2_mri mscmr_bssfp_mri; do organs+=(--data "$data/$d"); done
all=("${single[@]}" "${organs[@]}")
t0=$(date +%s)
stamp() { echo "$1: $(( $(date +%s) - t0 )) s"; }

# The model: Point, Box and 7 correction rounds (8 iterations), seed 0; the filled box next to it.
"$cli" eval --model "$model" --baseline boxfill "${single[@]}" --split "$split" --iterations 8 -q \
  --out "$out/models"
"$cli" eval --model "$model" --baseline boxfill --instance-classes "${organs[@]}" --split "$split" \
  --iterations 8 -q --out "$out/models_organs"
stamp "interactive 2D"
# GrabCut from the same tight boxes (box start only: it has no real point start), full resolution, 5
# iterations (the strongest setting we found for it).
"$cli" eval --baseline grabcut --grabcut-iterations 5 --grabcut-max-side 0 "${single[@]}" --split "$split" \
  --starts box --iterations 1 -q --out "$out/grabcut_box"
"$cli" eval --baseline grabcut --grabcut-iterations 5 --grabcut-max-side 0 --instance-classes \
  "${organs[@]}" --split "$split" --starts box --iterations 1 -q --out "$out/grabcut_box_organs"
stamp "grabcut"
# Stage 1 alone (synthetic data only), box start: what the medical data adds.
if [[ -f models/medicosam_synthetic_only.safetensors && "$model" == models/medicosam_default.safetensors ]]; then
  "$cli" eval --model models/medicosam_synthetic_only.safetensors "${single[@]}" --split "$split" \
    --starts box --iterations 1 -q --out "$out/synthetic_only_box"
  "$cli" eval --model models/medicosam_synthetic_only.safetensors --instance-classes "${organs[@]}" \
    --split "$split" --starts box --iterations 1 -q --out "$out/synthetic_only_box_organs"
fi
# 3D: one box on the middle slice of each lesion, propagated through the volume (the three MRI volumes).
"$cli" eval --model "$model" --protocol interactive3d --data "$data/mri_tumor_3d_pyradiomics" --split all \
  --starts box -q --out "$out/mri_3d"
stamp "3d"
# Automatic masks with the model's default settings (thresholds from its metadata, chosen on val).
"$cli" eval --protocol amg --model "$model" "${all[@]}" --split "$split" --limit "$amg_limit" -q \
  --out "$out/amg"
stamp "amg"
echo "reports: $out/{models,models_organs,grabcut_box,grabcut_box_organs,mri_3d,amg}/summary.md"
