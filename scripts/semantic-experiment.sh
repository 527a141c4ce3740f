#!/usr/bin/env bash
# The paper's semantic experiment at small scale (issue 18 item 6, MedicoSAM
# §1.7): per dataset, a UNETR head trained on SAM's image encoder initialised
# from (a) the default model, (b) the synthetic-only model, (c) random, against
# a plain 2D U-Net - the same data, steps, batch, optimiser and input size for
# all four. Model selection on the val split (best.pt by the validation metric);
# the test split is evaluated once at the end, all four models in one report.
#
#   scripts/semantic-experiment.sh [OUT]       (default models/evaluation/semantic)
# Environment: ITERATIONS (default 120), BATCH (4), DATASETS ("mscmr_bssfp_mri
# chaos_t2_mri", folders of ../shared/data whose instances/ hold class ids),
# THREADS (1: on a shared 2-core machine one thread per process avoids oversubscription),
# FEATURES (8: UNETR initial features / U-Net first level), TEST_LIMIT (0 = the whole test split),
# RUNS (runs/semantic_experiment).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${MEDICOSAM_CLI:-$root/build/apps/medicosam/medicosam}"
shared="${MEDICOSAM_SHARED:-$root/../shared}"
out="${1:-$root/models/evaluation/semantic}"
runs="${RUNS:-$root/runs/semantic_experiment}"
iterations="${ITERATIONS:-120}"
batch="${BATCH:-4}"
threads="${THREADS:-1}"
features="${FEATURES:-8}"
test_limit="${TEST_LIMIT:-0}"
datasets="${DATASETS:-mscmr_bssfp_mri chaos_t2_mri}"
mkdir -p "$out" "$runs"
times="$out/wall_time.txt"
echo "# wall times (s) of scripts/semantic-experiment.sh, ITERATIONS=$iterations BATCH=$batch FEATURES=$features THREADS=$threads TEST_LIMIT=$test_limit, $(date -u +%FT%TZ), $(nproc) cores" > "$times"

classes_of() {  # number of classes incl. background: 1 + the largest id in instances/
  python3 - "$1" <<'PY'
import json, sys
idx = json.load(open(sys.argv[1] + "/index.json"))
items = idx["items"] if isinstance(idx, dict) and "items" in idx else idx
ids = set()
for it in (items.values() if isinstance(items, dict) else items):
    for inst in it.get("instance_list", []):
        ids.add(int(inst["id"]))
print(max(ids) + 1)
PY
}

config() {  # config NAME DATASET CLASSES -> JSON on stdout
  local name="$1" ds="$2" classes="$3" model init arch=""
  case "$name" in
    unet) model="\"model\": \"unet\", \"features\": $features, \"depth\": 4, \"input_size\": 384" ;;
    *) model="\"model\": \"unetr\", \"features\": $features" ;;
  esac
  case "$name" in
    unetr_default) init="\"init\": \"$root/models/medicosam_default.safetensors\"," ;;
    unetr_synthetic) init="\"init\": \"$root/models/medicosam_synthetic_only.safetensors\"," ;;
    unetr_random) init=""
      arch='"architecture": {"img_size": 384, "patch_size": 16, "embed_dim": 192, "depth": 6, "num_heads": 3, "window_size": 8, "global_attn_indexes": [2, 5], "out_chans": 128, "decoder_mlp_dim": 512, "decoder_heads": 8},' ;;
    unet) init="" ;;
  esac
  cat <<JSON
{
  "objective": "semantic",
  "semantic": {$model, "num_classes": $classes},
  $init $arch
  "train_data": [{"type": "folder", "path": "$shared/data/$ds", "split": "train", "classes": "ids", "normalize": "minmax"}],
  "val_data": [{"type": "folder", "path": "$shared/data/$ds", "split": "val", "classes": "ids", "normalize": "minmax"}],
  "batch_size": $batch, "objects_per_image": 1, "iterations": $iterations, "epoch_length": $((iterations / 3)),
  "val_images": 16, "lr": 5e-4, "weight_decay": 0.01, "schedule": "cosine", "warmup": 10, "min_lr_ratio": 0.05,
  "grad_clip": 1.0, "seed": 0, "threads": $threads, "out_dir": "$runs/$ds/$name"
}
JSON
}

for ds in $datasets; do
  classes="$(classes_of "$shared/data/$ds")"
  models=()
  for name in unetr_default unetr_synthetic unetr_random unet; do
    mkdir -p "$runs/$ds/$name"
    config "$name" "$ds" "$classes" > "$runs/$ds/$name.json"
    t0=$(date +%s)
    "$bin" train --config "$runs/$ds/$name.json" --no-resume
    echo "train $ds $name $(( $(date +%s) - t0 ))" >> "$times"
    cp "$runs/$ds/$name/validation.csv" "$out/${ds}_${name}_validation.csv"
    if [ "$name" = unet ]; then models+=(-m "$runs/$ds/$name/best.safetensors"); else models+=(-m "$runs/$ds/$name/best.pt"); fi
  done
  # Names in the report: the run folders' names.
  for name in unetr_default unetr_synthetic unetr_random unet; do
    if [ "$name" = unet ]; then src="$runs/$ds/$name/best.safetensors"; ext=safetensors; else src="$runs/$ds/$name/best.pt"; ext=pt; fi
    ln -sf "$src" "$runs/$ds/$name.$ext"
  done
  t0=$(date +%s)
  "$bin" eval --protocol semantic -m "$runs/$ds/unetr_default.pt" -m "$runs/$ds/unetr_synthetic.pt" \
    -m "$runs/$ds/unetr_random.pt" -m "$runs/$ds/unet.safetensors" --data "$shared/data/$ds" --split test \
    --classes ids --normalize minmax --threads "$threads" --limit "$test_limit" -q --out "$out/$ds"
  echo "test-eval $ds $(( $(date +%s) - t0 ))" >> "$times"
done
echo "report folders: $out/<dataset>/summary.md; wall times: $times"
