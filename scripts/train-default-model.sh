#!/usr/bin/env bash
# Reproduces the embedded default model (models/MODEL_CARD.md) from scratch:
#   stage 1  promptable segmentation on synthetic images  (configs/default_model/pretrain_synthetic.json)
#   stage 2  the MedicoSAM recipe on the train splits of ../shared/data (configs/default_model/finetune_medical.json)
#   export   both stages as fp16 safetensors under models/
# Runs are written to runs/default_model/ and resume when interrupted (run the script again).
#   scripts/train-default-model.sh            (105 min measured on 2 cores, see models/MODEL_CARD.md; must stay under 2 h)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
"$root/scripts/install-deps.sh"
"$root/scripts/build.sh" medicosam
cli="${MEDICOSAM_BUILD_DIR:-$root/build}/apps/medicosam/medicosam"
mkdir -p runs/default_model models
log=runs/default_model/wall_time.txt
start=$(date +%s)
stamp() { echo "$1 $(( $(date +%s) - start )) s" | tee -a "$log"; }
echo "started $(date -u +%FT%TZ) on $(nproc) cores" >> "$log"

"$cli" train --config configs/default_model/pretrain_synthetic.json
stamp "stage1_synthetic_done"
"$cli" train --config configs/default_model/finetune_medical.json
stamp "stage2_medical_done"

"$cli" export runs/default_model/synthetic/best.pt --out models/medicosam_synthetic_only.safetensors --format safetensors --dtype float16
"$cli" export runs/default_model/medical/best.pt --out models/medicosam_default.safetensors --format safetensors --dtype float16
stamp "exported"
"$cli" info models/medicosam_default.safetensors
