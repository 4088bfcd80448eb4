#!/usr/bin/env bash
# On the borrowed GPU machine (see scripts/device-kit.sh): unpacks .device-kit, points the Vulkan
# loader at the NVIDIA driver, runs `bench/run.ts <args>` with the kit's node, and copies the
# results and the log to $OUT (the tool brings $OUT back). Example: bash scripts/device-run.sh gpu
set -euo pipefail
cd "$(dirname "$0")/.."
kit=.device-kit
out=${OUT:-/tmp/device-out}
mkdir -p "$out" .cache # .cache: src/gpu/node-device.ts's XDG_RUNTIME_DIR
[ -f "$kit/node.xz" ] || { echo "no $kit here: run scripts/device-kit.sh and carry .device-kit" >&2; exit 2; }
if ! ldconfig -p | grep -q 'libvulkan\.so\.1'; then
  for f in "$kit"/debs/*.deb; do dpkg -x "$f" /; done
  ldconfig
fi
bin=/tmp/device-kit-bin
mkdir -p "$bin"
[ -x "$bin/node" ] || { xz -dc "$kit/node.xz" > "$bin/node"; chmod +x "$bin/node"; }
dawn="$kit/node_modules/webgpu/dist/linux-x64/dawn.node"
[ -f "$dawn" ] || xz -dc "$dawn.xz" > "$dawn"
nvidia_icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [ -z "${VK_ICD_FILENAMES:-}" ] && [ -f "$nvidia_icd" ]; then export VK_ICD_FILENAMES="$nvidia_icd"; fi
command -v nvidia-smi >/dev/null && nvidia-smi -L || true
echo "node $("$bin/node" --version); VK_ICD_FILENAMES=${VK_ICD_FILENAMES:-unset}"
set +e
"$bin/node" "$kit/bundle/run.mjs" "$@" 2>&1 | tee "$out/device-run.log"
rc=${PIPESTATUS[0]}
set -e
cp "$kit"/bundle/results/*.json "$out/" 2>/dev/null || true
exit "$rc"
