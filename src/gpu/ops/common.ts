/** Small shared pieces of the op wrappers. */
import { createTensor } from '../buffers';
import { GpuError, type Gpu } from '../device';
import { ceilDiv, type Tensor } from '../kernels';

const zeroTensors = new WeakMap<GPUDevice, Tensor>();

/** A 64-element zero tensor bound where a kernel declares an optional input that is absent. */
export function zeros(device: GPUDevice): Tensor {
  let t = zeroTensors.get(device);
  if (!t) zeroTensors.set(device, (t = createTensor(device, 64, 'zeros')));
  return t;
}

/** ⌊log₂ x⌋ for x ≥ 1 (0 below): the tuners' shape classes. */
export const floorLog2 = (x: number): number => 31 - Math.clz32(Math.max(1, x));

/** WebGPU's default maxComputeWorkgroupsPerDimension, which is what openDevice asks for. */
export const MAX_WORKGROUPS_PER_DIM = 65535;

/**
 * Workgroups for `items` work items, `perGroup` to a workgroup (one element per thread of a
 * 256-thread workgroup; 1 for one row per workgroup), on a 2-D grid that fills x up to
 * `maxPerDim` and spills into y, so a dispatch may exceed 65535 workgroups. The WGSL side is
 * shaders/common/grid.wgsl (grid_index, grid_workgroup); the kernel must bounds-check, as the
 * last row of the grid may be partial.
 */
export function grid2d(items: number, perGroup = 256, maxPerDim = MAX_WORKGROUPS_PER_DIM): [number, number] {
  const groups = ceilDiv(items, perGroup);
  if (groups <= maxPerDim) return [groups, 1];
  return [maxPerDim, ceilDiv(groups, maxPerDim)];
}

const scratchByDevice = new WeakMap<GPUDevice, Map<string, Tensor>>();

/**
 * A scratch tensor of exactly `length` elements, one buffer per (device, key), allocated when
 * first needed and grown (to at least 1.5× its old size, within the device's binding limit) only
 * when a call needs more, never per call. The old buffer is dropped, not destroyed: dispatches
 * recorded earlier in the same, not yet submitted, command buffer may still bind it. Dispatches
 * recorded one after another may share a key: WebGPU orders compute passes, so a later pass sees
 * an earlier one's writes finished. Two tensors bound in the same dispatch need different keys.
 */
export function scratch(device: GPUDevice, key: string, length: number): Tensor {
  let byKey = scratchByDevice.get(device);
  if (!byKey) scratchByDevice.set(device, (byKey = new Map()));
  let t = byKey.get(key);
  if (!t || t.length < length) {
    const limit = Math.floor(Math.min(device.limits.maxBufferSize, device.limits.maxStorageBufferBindingSize) / 4);
    const grown = t ? Math.min(Math.ceil(t.length * 1.5), limit) : 0;
    t = createTensor(device, ceilDiv(Math.max(length, grown, 1), 64) * 64, `scratch:${key}`);
    byKey.set(key, t);
  }
  return { buffer: t.buffer, offset: 0, length };
}

/**
 * The two ways a row kernel (layer norm, attention) reduces: a tree in workgroup memory, with a
 * barrier per level (any device), or subgroupAdd/subgroupMax, no barrier (devices with the
 * 'subgroups' feature; CPU adapters pay dearly for barriers).
 */
export type ReductionVariant = 'workgroup' | 'subgroup';

/** The reduction variants this device can run. */
export function reductionVariants(gpu: Gpu): ReductionVariant[] {
  return gpu.hasSubgroups ? ['workgroup', 'subgroup'] : ['workgroup'];
}

/** Refuses a variant this device cannot run (or a misspelt one), saying what to use instead. */
export function checkReductionVariant(gpu: Gpu, variant: ReductionVariant, kernel: string): void {
  if (variant !== 'workgroup' && variant !== 'subgroup') throw new GpuError(`Unknown ${kernel} variant '${String(variant)}'; use 'workgroup' or 'subgroup'.`, 'validation');
  if (variant === 'subgroup' && !gpu.hasSubgroups) {
    throw new GpuError(
      `The ${kernel} variant 'subgroup' needs the WebGPU feature 'subgroups', which this device (${gpu.adapter.description}) ` +
        `does not have; use 'workgroup' (reductionVariants(gpu) lists the variants a device can run).`,
      'limits',
    );
  }
}

/**
 * A subgroup kernel's workgroup size (SG_WG): the adapter's largest subgroup size, so that a row's
 * workgroup is usually a single subgroup (lavapipe: 8 on AVX2 CPUs; SwiftShader: 4; NVIDIA and
 * Apple: 32). The kernels are correct for any mapping of invocations onto subgroups (in a
 * workgroup of several, only the subgroup holding invocation 0 works); this only picks the fast
 * case. Without the adapter's figure (older browsers lack GPUDevice.adapterInfo): 32.
 */
export function subgroupWorkgroupSize(gpu: Gpu): number {
  const max = gpu.subgroupSizes?.max;
  return typeof max === 'number' && max >= 4 && max <= 256 ? max : 32;
}
