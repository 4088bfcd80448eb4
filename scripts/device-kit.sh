#!/usr/bin/env bash
# Builds .device-kit/ (git-ignored): what the benchmarks need on a borrowed GPU machine that has
# no Node, no npm packages and no network (the workplace's `device` tool). Carry it with the run;
# scripts/device-run.sh unpacks and runs it there:
#   bash scripts/device-kit.sh
#   device run, carry [".device-kit"]:  bash scripts/device-run.sh gpu
# Holds: the benchmarks bundled by esbuild (bench/run.ts, one chunk per command; tfjs included,
# so `kernels` and `peer` can compare with tfjs-webgpu there), the `webgpu` package's Linux x64
# Dawn binding and this machine's node (both xz-compressed: the tool carries 64 MiB), and the
# Vulkan loader as a .deb (the machine's NVIDIA driver ships only its ICD).
#   bash scripts/device-kit.sh --bundle-only DIR   (the bundle alone, into DIR: the tests check it)
set -euo pipefail
cd "$(dirname "$0")/.."

# The bundle must sit two folders below the repository root, as src/gpu/*.ts do, so that their
# import.meta.url-relative paths (shaders/, .cache/) resolve the same from it.
bundle() {
  case "$1" in */*/*|/*|.|..|*/..|../*) echo "device-kit: $1 must be two folders below the repository root (like .device-kit/bundle)" >&2; exit 2 ;; */*) ;; *) echo "device-kit: $1 must be two folders below the repository root" >&2; exit 2 ;; esac
  rm -rf "$1"
  npx esbuild bench/run.ts --bundle --splitting --format=esm --platform=node --target=node20 \
    --external:webgpu --external:vite --external:playwright-core \
    --outdir="$1" --out-extension:.js=.mjs --log-level=warning
}
if [ "${1:-}" = --bundle-only ]; then bundle "${2:?--bundle-only DIR}"; exit 0; fi

kit=.device-kit
rm -rf "$kit"
mkdir -p "$kit/node_modules/webgpu/dist/linux-x64" "$kit/debs"
bundle "$kit/bundle"
cp node_modules/webgpu/index.js node_modules/webgpu/package.json "$kit/node_modules/webgpu/"
xz -T0 -6 -c node_modules/webgpu/dist/linux-x64/dawn.node > "$kit/node_modules/webgpu/dist/linux-x64/dawn.node.xz"
xz -T0 -6 -c "$(command -v node)" > "$kit/node.xz"
apt_amd64=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64)
(cd "$kit/debs" && apt-get "${apt_amd64[@]}" download libvulkan1 >/dev/null)
du -sh "$kit"
