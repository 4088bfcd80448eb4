/**
 * Adapter and device acquisition shared by the browser and Node.
 *
 * The only place that asks WebGPU for an adapter or a device. It says which adapter it got
 * (hardware, lavapipe, SwiftShader), requests exactly the limits a model needs and refuses
 * with a message naming the limit when the adapter cannot give it, and reports device loss
 * to the caller, who may acquire a new device and carry on.
 */
import { KernelRegistry, type ShaderSources } from './kernels';

export type AdapterKind = 'hardware' | 'lavapipe' | 'swiftshader' | 'software';

/** Thrown for every problem of the GPU runtime a user can act on; `message` says what to do. */
export class GpuError extends Error {
  constructor(message: string, readonly code: 'no-webgpu' | 'no-adapter' | 'limits' | 'device-lost' | 'shader' | 'validation' | 'out-of-memory') {
    super(message);
    this.name = 'GpuError';
  }
}

export interface AdapterReport {
  kind: AdapterKind;
  /** Human-readable: "lavapipe (Mesa 25.0.7, LLVM 15.0.6)". */
  description: string;
  vendor: string;
  architecture: string;
  /** GPUAdapterInfo.device (may be empty); part of the matmul tuner's adapter fingerprint. */
  device?: string;
  features: string[];
  limits: Record<string, number>;
}

/** Limits a model run needs beyond WebGPU's defaults; anything absent keeps the default. */
export type LimitsNeeded = Partial<Record<
  | 'maxStorageBufferBindingSize'
  | 'maxBufferSize'
  | 'maxComputeWorkgroupStorageSize'
  | 'maxComputeInvocationsPerWorkgroup'
  | 'maxComputeWorkgroupSizeX'
  | 'maxStorageBuffersPerShaderStage'
  | 'maxComputeWorkgroupsPerDimension',
  number
>>;

/** What the kernels of this project need whatever the model (workgroups of 256, 8 storage buffers). */
export const KERNEL_LIMITS: LimitsNeeded = {
  maxComputeInvocationsPerWorkgroup: 256,
  maxComputeWorkgroupSizeX: 256,
  maxStorageBuffersPerShaderStage: 8,
  maxComputeWorkgroupStorageSize: 16384,
};

export function classifyAdapter(info: GPUAdapterInfo): AdapterKind {
  const text = `${info.vendor} ${info.architecture} ${info.device} ${info.description}`.toLowerCase();
  if (text.includes('swiftshader')) return 'swiftshader';
  if (text.includes('llvmpipe') || text.includes('lavapipe')) return 'lavapipe';
  if ((info as { isFallbackAdapter?: boolean }).isFallbackAdapter) return 'software';
  return 'hardware';
}

export function describeAdapter(adapter: GPUAdapter): AdapterReport {
  const info = adapter.info;
  const kind = classifyAdapter(info);
  const limits: Record<string, number> = {};
  // GPUSupportedLimits exposes its fields as prototype getters, so `for…in` sees them.
  for (const key in adapter.limits) {
    const v = (adapter.limits as unknown as Record<string, unknown>)[key];
    if (typeof v === 'number') limits[key] = v;
  }
  const detail = [info.vendor, info.architecture, info.description || info.device].filter(Boolean).join(' ');
  const name = kind === 'hardware' ? detail || 'GPU' : `${kind} (${detail})`;
  return { kind, description: name, vendor: info.vendor, architecture: info.architecture, device: info.device, features: [...adapter.features].sort(), limits };
}

/** Checks `needs` against the adapter; the message names every limit that falls short. */
export function checkLimits(adapter: GPUAdapter, needs: LimitsNeeded): void {
  const short: string[] = [];
  for (const [name, want] of Object.entries(needs)) {
    const have = (adapter.limits as unknown as Record<string, number>)[name];
    if (want !== undefined && have !== undefined && have < want) short.push(`${name}: needs ${want}, adapter gives ${have}`);
  }
  if (short.length > 0) {
    throw new GpuError(
      `This GPU adapter cannot run this configuration (${short.join('; ')}). ` +
        'Choose a smaller model, batch or image size, or use a GPU with larger limits.',
      'limits',
    );
  }
}

export interface DeviceLoss {
  reason: GPUDeviceLostReason;
  message: string;
}

/**
 * A device with its adapter report and kernel registry. `lost` resolves when the device is
 * lost (never rejects); `destroy()` is a deliberate loss and is reported with reason 'destroyed'.
 */
export class Gpu {
  readonly kernels: KernelRegistry;
  readonly lost: Promise<DeviceLoss>;
  readonly hasTimestamps: boolean;
  readonly hasSubgroups: boolean;
  /** The adapter's subgroup sizes (GPUDevice.adapterInfo), where it reports them; the subgroup kernels' shapes follow them. */
  readonly subgroupSizes?: { min: number; max: number };
  readonly hasF16: boolean;
  /** rgba32float textures may be sampled (the 'vec4_sampled' matmul reads its operands so). */
  readonly hasFloat32Filterable: boolean;
  private readonly errors: string[] = [];

  constructor(readonly device: GPUDevice, readonly adapter: AdapterReport, sources: ShaderSources) {
    this.kernels = new KernelRegistry(device, sources);
    this.hasTimestamps = device.features.has('timestamp-query');
    this.hasSubgroups = device.features.has('subgroups');
    const info = (device as { adapterInfo?: { subgroupMinSize?: number; subgroupMaxSize?: number } }).adapterInfo;
    if (typeof info?.subgroupMinSize === 'number' && typeof info.subgroupMaxSize === 'number') this.subgroupSizes = { min: info.subgroupMinSize, max: info.subgroupMaxSize };
    this.hasF16 = device.features.has('shader-f16');
    this.hasFloat32Filterable = device.features.has('float32-filterable');
    this.lost = device.lost.then((info) => ({ reason: info.reason, message: info.message }));
    device.addEventListener('uncapturederror', (event) => {
      this.errors.push((event as GPUUncapturedErrorEvent).error.message);
    });
  }

  /** Validation errors no error scope caught; tests assert this stays empty. */
  takeUncapturedErrors(): string[] {
    return this.errors.splice(0);
  }

  destroy(): void {
    this.device.destroy();
  }
}

/**
 * Opens a device on `adapter` with the kernel limits plus `needs`, and the optional features
 * the kernels can use (timestamps, subgroups, f16, sampled f32 textures) when the adapter has them.
 */
export async function openDevice(adapter: GPUAdapter, sources: ShaderSources, needs: LimitsNeeded = {}): Promise<Gpu> {
  const required: LimitsNeeded = { ...KERNEL_LIMITS };
  for (const [k, v] of Object.entries(needs)) {
    const key = k as keyof LimitsNeeded;
    required[key] = Math.max(required[key] ?? 0, v ?? 0);
  }
  checkLimits(adapter, required);
  const wanted: GPUFeatureName[] = ['timestamp-query', 'subgroups', 'shader-f16', 'float32-filterable'];
  const requiredFeatures = wanted.filter((f) => adapter.features.has(f));
  let device: GPUDevice;
  try {
    device = await adapter.requestDevice({
      label: 'dmae-device',
      requiredFeatures,
      requiredLimits: required as Record<string, number>,
    });
  } catch (err) {
    throw new GpuError(`The GPU adapter refused to open a device: ${(err as Error).message}`, 'limits');
  }
  return new Gpu(device, describeAdapter(adapter), sources);
}

/** The browser path: `navigator.gpu`, high-performance adapter first. */
export async function acquireBrowserGpu(sources: ShaderSources, needs: LimitsNeeded = {}): Promise<Gpu> {
  const gpu = (globalThis.navigator as Navigator | undefined)?.gpu;
  if (!gpu) {
    throw new GpuError(
      'This browser does not expose WebGPU. Use Chrome or Edge 113+ (or Chromium started with ' +
        '--enable-unsafe-webgpu on Linux), Safari 26+, or Firefox 141+ on Windows; the page must be served ' +
        'from https:// or http://localhost.',
      'no-webgpu',
    );
  }
  const adapter = (await gpu.requestAdapter({ powerPreference: 'high-performance' })) ?? (await gpu.requestAdapter());
  if (!adapter) {
    throw new GpuError(
      'WebGPU is present but no GPU adapter is available. Enable hardware acceleration in the browser ' +
        'settings, or on Linux start Chromium with --enable-unsafe-webgpu (and --enable-features=Vulkan).',
      'no-adapter',
    );
  }
  return openDevice(adapter, sources, needs);
}
