#!/usr/bin/env bash
# Installs Mesa 25's lavapipe (software Vulkan) into .cache/lavapipe without touching the system
# driver. Dawn rejects bookworm's Mesa 22, so it comes from bookworm-backports, unpacked locally.
# Prints nothing on success when already present. Writes .cache/lavapipe/env.sh to source.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cache="$root/.cache/lavapipe"
[ -f "$cache/env.sh" ] && exit 0
mkdir -p "$cache/apt/lists/partial" "$cache/apt/sources" "$cache/debs" "$cache/root"
# The driver's own dependencies are ordinary bookworm libraries: install those system-wide.
apt-get install -y --no-install-recommends libvulkan1 libllvm15 libelf1 libexpat1 libwayland-client0 \
  libx11-xcb1 libxcb-dri3-0 libxcb-present0 libxcb-randr0 libxcb-shm0 libxcb-sync1 libxcb-xfixes0 \
  libxcb1 libxshmfence1 libzstd1 >/dev/null
cat > "$cache/apt/sources/backports.sources" <<SRC
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
apt_opts=(-oDir::Etc::SourceParts="$cache/apt/sources" -oDir::Etc::SourceList=/dev/null
          -oDir::State::Lists="$cache/apt/lists" -oDir::Cache::Archives="$cache/debs")
apt-get "${apt_opts[@]}" update >/dev/null
( cd "$cache/debs" && apt-get "${apt_opts[@]}" download \
    mesa-vulkan-drivers/bookworm-backports libdrm2/bookworm-backports libdrm-amdgpu1/bookworm-backports \
    2> >(grep -v 'unsandboxed' >&2) >/dev/null )
for deb in "$cache"/debs/*.deb; do dpkg -x "$deb" "$cache/root"; done
lib="$cache/root/usr/lib/x86_64-linux-gnu"
cat > "$cache/lvp_icd.json" <<JSON
{ "file_format_version": "1.0.0",
  "ICD": { "library_path": "$lib/libvulkan_lvp.so", "api_version": "1.3.0" } }
JSON
cat > "$cache/env.sh" <<ENV
export LD_LIBRARY_PATH="$lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
export VK_ICD_FILENAMES="$cache/lvp_icd.json"
export XDG_RUNTIME_DIR="\${XDG_RUNTIME_DIR:-$cache/xdg}"
ENV
mkdir -p "$cache/xdg"; chmod 700 "$cache/xdg"
