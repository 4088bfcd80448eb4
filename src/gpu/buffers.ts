/**
 * Buffers and arenas. One allocation per role (parameters, gradients, AdamW moments,
 * activations), carved into named tensors by a layout table; a tensor is a 256-byte-aligned
 * view so that it can be bound on its own.
 */
import { GpuError } from './device';
import type { Tensor } from './kernels';

/** Usage of every storage tensor (a function: Node installs the GPU* globals only when a device is made). */
export const storageUsage = (): number => GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
const ALIGN_ELEMS = 64; // 256 bytes / 4

export interface TensorEntry {
  name: string;
  shape: number[];
  /** Element offset inside the arena. */
  start: number;
  length: number;
}

export const numel = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);

/** A layout table: names, shapes and aligned element offsets, independent of any device. */
export class ArenaLayout {
  readonly entries: TensorEntry[] = [];
  private readonly byName = new Map<string, TensorEntry>();
  size = 0;

  add(name: string, shape: number[]): TensorEntry {
    if (this.byName.has(name)) throw new Error(`Arena layout: "${name}" is declared twice.`);
    const length = numel(shape);
    const entry = { name, shape: [...shape], start: this.size, length };
    this.size += Math.ceil(Math.max(length, 1) / ALIGN_ELEMS) * ALIGN_ELEMS;
    this.entries.push(entry);
    this.byName.set(name, entry);
    return entry;
  }

  get(name: string): TensorEntry {
    const e = this.byName.get(name);
    if (!e) throw new Error(`Arena layout has no tensor "${name}".`);
    return e;
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  get bytes(): number {
    return this.size * 4;
  }
}

/** One GPU buffer holding every tensor of a layout. */
export class Arena {
  readonly buffer: GPUBuffer;

  constructor(readonly device: GPUDevice, readonly layout: ArenaLayout, readonly label: string) {
    const bytes = Math.max(layout.bytes, 256);
    if (bytes > device.limits.maxBufferSize || bytes > device.limits.maxStorageBufferBindingSize) {
      throw new GpuError(
        `The ${label} arena needs ${(bytes / 2 ** 20).toFixed(1)} MiB in one buffer; this device allows ` +
          `${(Math.min(device.limits.maxBufferSize, device.limits.maxStorageBufferBindingSize) / 2 ** 20).toFixed(0)} MiB. Use a smaller model or batch.`,
        'out-of-memory',
      );
    }
    this.buffer = device.createBuffer({ label, size: bytes, usage: storageUsage() });
  }

  tensor(name: string): Tensor {
    const e = this.layout.get(name);
    return { buffer: this.buffer, offset: e.start * 4, length: e.length };
  }

  /** The whole arena as one tensor (for AdamW and gradient norms, which run over everything). */
  get all(): Tensor {
    return { buffer: this.buffer, offset: 0, length: this.layout.size };
  }

  destroy(): void {
    this.buffer.destroy();
  }
}

/** A standalone storage tensor (tests, scratch). */
export function createTensor(device: GPUDevice, length: number, label: string, data?: Float32Array | Uint32Array | Int32Array): Tensor {
  const size = Math.max(16, Math.ceil((length * 4) / 16) * 16);
  const buffer = device.createBuffer({ label, size, usage: storageUsage() });
  if (data) device.queue.writeBuffer(buffer, 0, data.buffer, data.byteOffset, Math.min(data.byteLength, length * 4));
  return { buffer, offset: 0, length };
}

export function upload(device: GPUDevice, t: Tensor, data: Float32Array | Uint32Array | Int32Array): void {
  if (data.length > t.length) throw new Error(`upload: ${data.length} elements into a tensor of ${t.length}`);
  device.queue.writeBuffer(t.buffer, t.offset, data.buffer, data.byteOffset, data.byteLength);
}

/** Copies a tensor back to the CPU (waits for all queued work). */
export async function readback(device: GPUDevice, t: Tensor): Promise<Float32Array> {
  const bytes = Math.ceil((t.length * 4) / 4) * 4;
  const staging = device.createBuffer({ label: 'readback', size: Math.max(bytes, 4), usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  const enc = device.createCommandEncoder({ label: 'readback' });
  enc.copyBufferToBuffer(t.buffer, t.offset, staging, 0, bytes);
  device.queue.submit([enc.finish()]);
  await staging.mapAsync(GPUMapMode.READ);
  const out = new Float32Array(staging.getMappedRange().slice(0));
  staging.unmap();
  staging.destroy();
  return out;
}

export async function readbackU32(device: GPUDevice, t: Tensor): Promise<Uint32Array> {
  const f = await readback(device, t);
  return new Uint32Array(f.buffer);
}
