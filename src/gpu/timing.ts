/**
 * GPU timing with `timestamp-query`: each labelled compute pass writes a begin and an end
 * timestamp; `read()` returns the nanoseconds of each pass, summed by label.
 * Where the adapter has no timestamps, callers time whole submissions on the CPU instead.
 */
export class GpuTimer {
  private readonly querySet: GPUQuerySet;
  private readonly resolveBuf: GPUBuffer;
  private readonly readBuf: GPUBuffer;
  private labels: string[] = [];

  constructor(private readonly device: GPUDevice, readonly capacity = 512) {
    this.querySet = device.createQuerySet({ label: 'timer', type: 'timestamp', count: 2 * capacity });
    this.resolveBuf = device.createBuffer({ label: 'timer-resolve', size: 16 * capacity, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
    this.readBuf = device.createBuffer({ label: 'timer-read', size: 16 * capacity, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  }

  static available(device: GPUDevice): boolean {
    return device.features.has('timestamp-query');
  }

  /** Timestamp writes for the next pass, or undefined once the capacity is used up. */
  writes(label: string): GPUComputePassTimestampWrites | undefined {
    const i = this.labels.length;
    if (i >= this.capacity) return undefined;
    this.labels.push(label);
    return { querySet: this.querySet, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 };
  }

  resolve(encoder: GPUCommandEncoder): void {
    const n = this.labels.length;
    if (n === 0) return;
    encoder.resolveQuerySet(this.querySet, 0, 2 * n, this.resolveBuf, 0);
    encoder.copyBufferToBuffer(this.resolveBuf, 0, this.readBuf, 0, 16 * n);
  }

  /** Nanoseconds per label for the passes recorded since the last read; resets the timer. */
  async read(): Promise<Map<string, number>> {
    const labels = this.labels;
    this.labels = [];
    const out = new Map<string, number>();
    if (labels.length === 0) return out;
    await this.readBuf.mapAsync(GPUMapMode.READ, 0, 16 * labels.length);
    const t = new BigUint64Array(this.readBuf.getMappedRange(0, 16 * labels.length).slice(0));
    this.readBuf.unmap();
    labels.forEach((label, i) => {
      const ns = Number(t[2 * i + 1] - t[2 * i]);
      out.set(label, (out.get(label) ?? 0) + Math.max(0, ns));
    });
    return out;
  }

  destroy(): void {
    this.querySet.destroy();
    this.resolveBuf.destroy();
    this.readBuf.destroy();
  }
}
