/**
 * The Node path to a GPU: Dawn's node bindings (the `webgpu` package) over a Vulkan driver.
 *
 * Tries, in order, the system's own Vulkan drivers (kept only if they give a hardware adapter),
 * Mesa's lavapipe unpacked by scripts/setup-lavapipe.sh, and the SwiftShader that ships with
 * Debian's chromium. `DMAE_ADAPTER=hardware|lavapipe|swiftshader` forces one; a user-set
 * VK_ICD_FILENAMES is respected as it is.
 */
import { existsSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { setDefaultTuneStore } from './autotune';
import { fileTuneStore } from './autotune-node';
import { GpuError, classifyAdapter, openDevice, type AdapterKind, type Gpu, type LimitsNeeded } from './device';
import { loadShaderSourcesFromDisk } from './shader-sources-disk';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const LAVAPIPE_ICD = process.env.DMAE_LAVAPIPE_ICD ?? `${REPO_ROOT}.cache/lavapipe/lvp_icd.json`;
export const SWIFTSHADER_ICD = '/usr/lib/chromium/vk_swiftshader_icd.json';

// Dawn's GPU object must outlive every device made from it: letting it be collected
// crashes the process. Keep every one we create for the life of the process.
const keepAlive: unknown[] = [];

interface Candidate {
  kind: AdapterKind | 'system';
  icd: string | undefined;
}

/** Whether the Vulkan loader's standard folders list any driver (else the system try is skipped). */
function systemHasVulkanDrivers(): boolean {
  const dirs = ['/usr/share/vulkan/icd.d', '/etc/vulkan/icd.d', '/usr/local/share/vulkan/icd.d'];
  return dirs.some((d) => existsSync(d) && readdirSync(d).some((f) => f.endsWith('.json')));
}

function candidates(): Candidate[] {
  const forced = process.env.DMAE_ADAPTER as AdapterKind | undefined;
  if (process.env.VK_ICD_FILENAMES && !forced) return [{ kind: 'system', icd: process.env.VK_ICD_FILENAMES }];
  const all: Candidate[] = [
    { kind: 'hardware', icd: undefined },
    { kind: 'lavapipe', icd: LAVAPIPE_ICD },
    { kind: 'swiftshader', icd: SWIFTSHADER_ICD },
  ];
  const present = all.filter((c) => (c.icd === undefined ? systemHasVulkanDrivers() : existsSync(c.icd)));
  return forced ? present.filter((c) => c.kind === forced) : present;
}

/**
 * Dawn's Node binding ticks its devices through `setImmediate` for as long as any of its promises
 * is pending (its AsyncRunner; crbug.com/dawn/1127): every wait for the GPU is a busy loop on the
 * main thread. On a CPU adapter that loop takes a core from the driver's own threads — measured
 * on lavapipe with two cores, a matmul ran at 23.5 GFLOP/s while awaited and 44 with the loop
 * slowed. The binding looks `setImmediate` up on the global object at every tick, and its tick is
 * a native function, so those calls (and only those) are put on a timer: a tick per millisecond,
 * which costs a wait at most a millisecond. Everyone else's `setImmediate` is the original.
 */
export function throttleDawnTicks(): void {
  const g = globalThis as unknown as Record<PropertyKey, unknown> & { setImmediate: typeof setImmediate };
  if (g[DAWN_TICKS_THROTTLED]) return;
  const immediate = g.setImmediate;
  const isNative = (f: unknown): boolean => typeof f === 'function' && Function.prototype.toString.call(f).endsWith('{ [native code] }');
  const throttled = (callback: (...args: unknown[]) => void, ...args: unknown[]) => (isNative(callback) ? setTimeout(callback, 0, ...args) : immediate(callback, ...args));
  for (const key of Object.getOwnPropertySymbols(immediate)) Object.defineProperty(throttled, key, Object.getOwnPropertyDescriptor(immediate, key)!); // util.promisify.custom
  g.setImmediate = throttled as unknown as typeof setImmediate;
  g[DAWN_TICKS_THROTTLED] = true;
}
const DAWN_TICKS_THROTTLED = Symbol.for('dmae.dawnTicksThrottled');

async function requestAdapterWith(icd: string | undefined): Promise<GPUAdapter | null> {
  // The Vulkan loader reads VK_ICD_FILENAMES when Dawn creates its instance, i.e. in create().
  const saved = process.env.VK_ICD_FILENAMES;
  if (icd === undefined) delete process.env.VK_ICD_FILENAMES;
  else process.env.VK_ICD_FILENAMES = icd;
  process.env.XDG_RUNTIME_DIR ??= `${REPO_ROOT}.cache`;
  try {
    const { create, globals } = await import('webgpu');
    Object.assign(globalThis, globals);
    throttleDawnTicks();
    const gpu = create(['backend=vulkan']);
    keepAlive.push(gpu);
    return (await gpu.requestAdapter({ powerPreference: 'high-performance' })) ?? null;
  } finally {
    if (saved === undefined) delete process.env.VK_ICD_FILENAMES;
    else process.env.VK_ICD_FILENAMES = saved;
  }
}

/** Finds the best adapter Node can reach, without opening a device. */
export async function findNodeAdapter(): Promise<GPUAdapter> {
  setDefaultTuneStore(fileTuneStore, true); // the matmul tuner's choices persist in a file (autotune-node.ts)
  const tried: string[] = [];
  for (const c of candidates()) {
    const adapter = await requestAdapterWith(c.icd);
    if (!adapter) {
      tried.push(`${c.kind}: no adapter`);
      continue;
    }
    const kind = classifyAdapter(adapter.info);
    // The system drivers count only when they are a real GPU; software ones come next, by name.
    if (c.kind === 'hardware' && kind !== 'hardware') {
      tried.push(`system drivers: only ${kind}`);
      continue;
    }
    // SwiftShader is several times slower than lavapipe on the same cores: say how to get lavapipe.
    if (c.kind === 'swiftshader' && !process.env.DMAE_ADAPTER && !existsSync(LAVAPIPE_ICD)) {
      process.stderr.write(`note: no lavapipe at ${LAVAPIPE_ICD} (run \`bash scripts/setup-lavapipe.sh\`): WebGPU runs on SwiftShader, several times slower.\n`);
    }
    return adapter;
  }
  throw new GpuError(
    `No WebGPU adapter in Node (${tried.join('; ') || 'no Vulkan driver found'}). Install a Vulkan driver: ` +
      'run `bash scripts/setup-lavapipe.sh` for Mesa lavapipe, or `apt-get install chromium` for SwiftShader.',
    'no-adapter',
  );
}

/** Adapter (found here unless given) + device + kernel registry over the shaders on disk. */
export async function acquireNodeGpu(needs: LimitsNeeded = {}, adapter?: GPUAdapter): Promise<Gpu> {
  return openDevice(adapter ?? (await findNodeAdapter()), loadShaderSourcesFromDisk(), needs);
}
