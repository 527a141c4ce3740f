#!/usr/bin/env bash
# Quick start: installs what medicosam needs, builds the CLI, and segments the
# bundled fetal-head ultrasound sample (from a box prompt) with the embedded
# default model. Writes out/quickstart_mask.png and out/quickstart_overlay.png
# and prints the predicted IoU and timings.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/install-deps.sh
scripts/build.sh medicosam
mkdir -p out
"${MEDICOSAM_BUILD_DIR:-$root/build}/apps/medicosam/medicosam" segment \
  --image samples/us_fetal_head_hc18_042.jpg --box 103,39,382,300 \
  --out out/quickstart_mask.png --overlay out/quickstart_overlay.png --json
echo "wrote out/quickstart_mask.png and out/quickstart_overlay.png"
