#!/usr/bin/env bash
# Every check, in three tiers, stopping at the first failure (what `npm test` and CI run):
#   static    tsc, and every shader + entry point compiled by Tint (Dawn's null backend)
#   kernels   vitest: kernels on real WebGPU (Dawn in Node, lavapipe) against the float64 reference
#   e2e       Playwright: the studio in Debian's Chromium with WebGPU (SwiftShader)
# Installs nothing itself but Mesa lavapipe (scripts/setup-lavapipe.sh, idempotent, needs apt)
# when it is missing; without it the Node tests fall back to Chromium's SwiftShader.
set -uo pipefail
cd "$(dirname "$0")/.."

if [ ! -f .cache/lavapipe/env.sh ]; then
  echo "==> lavapipe (Mesa 25 software Vulkan) missing: bash scripts/setup-lavapipe.sh"
  if ! bash scripts/setup-lavapipe.sh; then
    echo "warning: could not install lavapipe (apt unusable?); Node tests will use SwiftShader if Chromium is installed" >&2
  fi
fi

tiers=("typecheck:npx tsc --noEmit -p tsconfig.json"
       "shaders:npm run -s shaders:check"
       "kernels:npx vitest run"
       "e2e:npx playwright test")
passed=0
failed=0
report=()
for tier in "${tiers[@]}"; do
  name="${tier%%:*}"
  cmd="${tier#*:}"
  echo
  echo "==> [$name] $cmd"
  start=$SECONDS
  if $cmd; then
    passed=$((passed + 1))
    report+=("$name ok ($((SECONDS - start))s)")
  else
    failed=$((failed + 1))
    report+=("$name FAILED ($((SECONDS - start))s)")
    break
  fi
done
skipped=$(( ${#tiers[@]} - passed - failed ))

echo
printf '%s\n' "${report[@]/#/  }"
suffix=""
[ "$skipped" -gt 0 ] && suffix=", $skipped not run"
echo "tiers: $passed passed, $failed failed$suffix"
[ "$failed" -eq 0 ]
