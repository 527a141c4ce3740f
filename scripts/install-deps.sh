#!/usr/bin/env bash
# Installs every Debian package medicosam needs to build, test and benchmark.
# Idempotent: re-running only installs what is missing. Used by README and .ci/run.
set -euo pipefail

PKGS=(
  # toolchain
  build-essential cmake ninja-build ccache pkg-config git clang libclang-rt-14-dev
  # engine
  libtorch-dev libgloo-dev libopenblas0-openmp libjemalloc2
  # medical I/O
  libinsighttoolkit5-dev libgdcm-tools libdcmtk-dev dcmtk dicom3tools libblosc-dev
  # images, CLI, server, logging
  libpng-dev libjpeg-dev libtiff-dev zlib1g-dev libopencv-dev
  libcpp-httplib-dev nlohmann-json3-dev libcli11-dev libspdlog-dev libfmt-dev
  # tests and benchmarks
  libgtest-dev libgmock-dev libbenchmark-dev
  # interoperability checks in tests only (the product never needs Python)
  python3-torch python3-numpy python3-nibabel python3-pydicom python3-opencv python3-pil python3-zarr python3-requests
  # the optional Python module (python/, `import medicosam`)
  python3-dev pybind11-dev
  # the DICOMweb datastore's tests run a real PACS; the web UI's tests a real browser
  orthanc orthanc-dicomweb chromium
)
# The web UI is built with node + npm (web/). A machine that already has a
# node (e.g. from nodesource, which bundles npm) keeps it; otherwise Debian's.
command -v npm > /dev/null 2>&1 || PKGS+=(nodejs npm)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  echo "install-deps: installing ${#missing[@]} package(s): ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "install-deps: all ${#PKGS[@]} packages present"
fi

# npm packages of the web UI, pinned by web/package-lock.json. Installed once
# into web/node_modules (which fills npm's cache); the build itself then runs
# offline. Skipped when node_modules already matches the lockfile.
WEB="$(cd "$(dirname "${BASH_SOURCE[0]}")/../web" && pwd)"
stamp="$WEB/node_modules/.medicosam-lock.sha256"
want="$(sha256sum "$WEB/package-lock.json" | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "install-deps: web/node_modules matches package-lock.json"
else
  echo "install-deps: npm ci in web/"
  (cd "$WEB" && npm ci --no-audit --no-fund --prefer-offline)
  echo "$want" > "$stamp"
fi
