/**
 * The kernel registry and the dispatch recorder.
 *
 * A kernel is (shader file, entry point, override constants). The registry composes the WGSL
 * (`// #import common/x` pulls in a shared file once), caches one shader module per file and
 * one pipeline per (shader, entry, constants), labels everything, and turns a compile error
 * into a message with the file, line and a caret. The recorder records dispatches into one
 * command encoder, with per-dispatch parameters in slots of one uniform buffer.
 *
 * Binding convention for every entry point: @group(0) @binding(0) is the `Params` uniform,
 * storage buffers follow from @binding(1). A `Tensor` is an f32/u32 view into a buffer.
 */
import { GpuError, type Gpu } from './device';
import type { GpuTimer } from './timing';

export type ShaderSources = Record<string, string>;

export interface KernelSpec {
  shader: string;
  entry: string;
  constants?: Record<string, number>;
}

/** A view of `length` 4-byte elements at byte `offset` (256-aligned) of `buffer`. */
export interface Tensor {
  buffer: GPUBuffer;
  offset: number;
  length: number;
}

/**
 * A texture view or a sampler, bound where a kernel declares one (shaders/matmul_sampled.wgsl's
 * operands); `id` names it in the bind-group cache, so make one per resource and keep it.
 */
export interface ResourceBinding {
  resource: GPUTextureView | GPUSampler;
  id: number;
}

/** Recorder.copyToTextures: `texels` texels of dst from the start of src. */
export interface TextureCopy {
  src: Tensor;
  dst: GPUTexture;
  texels: number;
}

/** What a kernel binds at binding i + 1: a slice of a storage buffer, or a texture view or sampler. */
export type Binding = Tensor | ResourceBinding;

const isTensor = (b: Binding): b is Tensor => 'buffer' in b;

let nextResourceId = 1;
/** Wraps a texture view or sampler for binding (see ResourceBinding). */
export const resourceBinding = (resource: GPUTextureView | GPUSampler): ResourceBinding => ({ resource, id: nextResourceId++ });

/** A uniform field: plain numbers are u32; floats and signed ints say so. */
export type Param = number | { f32: number } | { i32: number };

interface ComposedShader {
  code: string;
  /** For each line of `code`, the file and line it came from. */
  origin: Array<{ file: string; line: number }>;
}

const IMPORT = /^\s*\/\/\s*#import\s+([\w/.-]+)\s*$/;

export function composeShader(name: string, sources: ShaderSources): ComposedShader {
  const code: string[] = [];
  const origin: ComposedShader['origin'] = [];
  const seen = new Set<string>();
  const include = (file: string, from: string): void => {
    if (seen.has(file)) return;
    seen.add(file);
    const text = sources[file];
    if (text === undefined) throw new GpuError(`Shader "${from}" imports "${file}", which does not exist in shaders/.`, 'shader');
    text.split('\n').forEach((line, i) => {
      const m = IMPORT.exec(line);
      if (m) include(m[1], file);
      else {
        code.push(line);
        origin.push({ file, line: i + 1 });
      }
    });
  };
  include(name, name);
  return { code: code.join('\n'), origin };
}

/** Formats compilation messages as `shaders/file.wgsl:line:col: message`, the line, and a caret. */
export function formatCompileErrors(shader: ComposedShader, messages: readonly GPUCompilationMessage[]): string {
  const lines = shader.code.split('\n');
  return messages
    .filter((m) => m.type === 'error')
    .map((m) => {
      const at = shader.origin[m.lineNum - 1];
      const where = at ? `shaders/${at.file}.wgsl:${at.line}:${m.linePos}` : `line ${m.lineNum}:${m.linePos}`;
      const src = lines[m.lineNum - 1] ?? '';
      return `${where}: ${m.message}\n  ${src}\n  ${' '.repeat(Math.max(0, m.linePos - 1))}^`;
    })
    .join('\n');
}

const UNIFORM_SLOT = 256; // minUniformBufferOffsetAlignment on every adapter
const UNIFORM_SLOTS = 4096;

export class KernelRegistry {
  private readonly modules = new Map<string, { module: GPUShaderModule; composed: ComposedShader }>();
  private readonly pipelines = new Map<string, GPUComputePipeline>();
  private readonly checks: Promise<void>[] = [];
  private readonly compileErrors: GpuError[] = [];
  /** Set to print every composed shader as it is compiled (debugging). */
  debug = false;

  constructor(readonly device: GPUDevice, readonly sources: ShaderSources) {}

  private module(shader: string): { module: GPUShaderModule; composed: ComposedShader } {
    let m = this.modules.get(shader);
    if (!m) {
      const composed = composeShader(shader, this.sources);
      if (this.debug) console.log(`// ---- ${shader}.wgsl ----\n${composed.code}`);
      const module = this.device.createShaderModule({ label: shader, code: composed.code });
      m = { module, composed };
      this.modules.set(shader, m);
      // Recorded, not thrown: nobody may be awaiting this module yet; submit() reports it.
      this.checks.push(
        module.getCompilationInfo().then((info) => {
          if (info.messages.some((x) => x.type === 'error')) {
            this.compileErrors.push(new GpuError(`WGSL compile error in ${shader}:\n${formatCompileErrors(composed, info.messages)}`, 'shader'));
          }
        }),
      );
    }
    return m;
  }

  static key(spec: KernelSpec): string {
    const c = spec.constants ? Object.entries(spec.constants).sort(([a], [b]) => (a < b ? -1 : 1)).map(([k, v]) => `${k}=${v}`).join(',') : '';
    return `${spec.shader}:${spec.entry}:${c}`;
  }

  /** The cached pipeline; compile errors surface from `checkCompiled()` (awaited on submit). */
  pipeline(spec: KernelSpec): GPUComputePipeline {
    const key = KernelRegistry.key(spec);
    let p = this.pipelines.get(key);
    if (!p) {
      const { module } = this.module(spec.shader);
      p = this.device.createComputePipeline({
        label: key,
        layout: 'auto',
        compute: { module, entryPoint: spec.entry, constants: spec.constants },
      });
      this.pipelines.set(key, p);
    }
    return p;
  }

  /** Compiles one kernel inside an error scope; throws a GpuError that shows the WGSL line. */
  async compile(spec: KernelSpec): Promise<void> {
    const { module, composed } = this.module(spec.shader);
    const info = await module.getCompilationInfo();
    if (info.messages.some((m) => m.type === 'error')) {
      throw new GpuError(`WGSL compile error in ${spec.shader}:\n${formatCompileErrors(composed, info.messages)}`, 'shader');
    }
    this.device.pushErrorScope('validation');
    const pipeline = await this.device
      .createComputePipelineAsync({ label: KernelRegistry.key(spec), layout: 'auto', compute: { module, entryPoint: spec.entry, constants: spec.constants } })
      .catch((e: Error) => e);
    const err = await this.device.popErrorScope();
    if (pipeline instanceof Error || err) {
      throw new GpuError(`Cannot build kernel ${KernelRegistry.key(spec)}: ${(pipeline instanceof Error ? pipeline : err)!.message}`, 'shader');
    }
  }

  /** Rejects with the first compile error of any module built so far. */
  async checkCompiled(): Promise<void> {
    await Promise.all(this.checks);
    if (this.compileErrors.length > 0) throw this.compileErrors[0];
  }

  get pipelineCount(): number {
    return this.pipelines.size;
  }
}

function packParams(params: readonly Param[], into: DataView, at: number): void {
  params.forEach((p, i) => {
    const o = at + 4 * i;
    if (typeof p === 'number') into.setUint32(o, p, true);
    else if ('f32' in p) into.setFloat32(o, p.f32, true);
    else into.setInt32(o, p.i32, true);
  });
}

const bufferIds = new WeakMap<GPUBuffer, number>();
let nextBufferId = 1;
function bufferId(b: GPUBuffer): number {
  let id = bufferIds.get(b);
  if (id === undefined) bufferIds.set(b, (id = nextBufferId++));
  return id;
}

/**
 * Uniform slots and bind groups shared by all recorders of a device. Slots are reused from 0 by
 * each recorder: a queue write for the next submission is ordered after the previous one on the
 * queue timeline, so reuse is safe. Bind groups are cached by (pipeline, bindings, slot), so a
 * training step that dispatches the same sequence every iteration creates none after the first.
 */
export class DispatchCache {
  readonly uniforms: GPUBuffer;
  private readonly bindGroups = new Map<string, GPUBindGroup>();
  private readonly pipelineIds = new WeakMap<GPUComputePipeline, number>();
  private nextPipelineId = 1;

  constructor(readonly device: GPUDevice) {
    this.uniforms = device.createBuffer({ label: 'kernel-params', size: UNIFORM_SLOT * UNIFORM_SLOTS, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
  }

  private spareStaging: DataView | null = new DataView(new ArrayBuffer(UNIFORM_SLOT * UNIFORM_SLOTS));

  /**
   * The CPU side of the uniform slots, lent to one recorder at a time so that a step loop
   * allocates nothing; a second recorder recording at the same time gets its own.
   */
  takeStaging(): DataView {
    const s = this.spareStaging ?? new DataView(new ArrayBuffer(UNIFORM_SLOT * UNIFORM_SLOTS));
    this.spareStaging = null;
    return s;
  }

  returnStaging(s: DataView): void {
    this.spareStaging = s;
  }

  /** How many bind groups exist (a repeated step must not add any). */
  get bindGroupCount(): number {
    return this.bindGroups.size;
  }

  bindGroup(pipeline: GPUComputePipeline, slot: number | null, bindings: readonly (Binding | undefined)[]): GPUBindGroup {
    let pid = this.pipelineIds.get(pipeline);
    if (pid === undefined) this.pipelineIds.set(pipeline, (pid = this.nextPipelineId++));
    const bindingKey = (t: Binding | undefined): string => (!t ? '-' : isTensor(t) ? `${bufferId(t.buffer)}@${t.offset}+${t.length}` : `r${t.id}`);
    const key = `${pid}|${slot}|${bindings.map(bindingKey).join(',')}`;
    let group = this.bindGroups.get(key);
    if (!group) {
      const entries: GPUBindGroupEntry[] = [];
      if (slot !== null) entries.push({ binding: 0, resource: { buffer: this.uniforms, offset: slot * UNIFORM_SLOT, size: UNIFORM_SLOT } });
      bindings.forEach((t, i) => {
        if (t) entries.push({ binding: i + 1, resource: isTensor(t) ? { buffer: t.buffer, offset: t.offset, size: Math.max(4, t.length * 4) } : t.resource });
      });
      group = this.device.createBindGroup({ label: pipeline.label, layout: pipeline.getBindGroupLayout(0), entries });
      if (this.bindGroups.size > 50_000) this.bindGroups.clear(); // shapes changed many times: start over
      this.bindGroups.set(key, group);
    }
    return group;
  }
}

const caches = new WeakMap<GPUDevice, DispatchCache>();
export function dispatchCache(device: GPUDevice): DispatchCache {
  let c = caches.get(device);
  if (!c) caches.set(device, (c = new DispatchCache(device)));
  return c;
}

/** The precision of matmul operands: f32, or f16 with f32 accumulation (mixed precision). */
export type MatmulPrecision = 'f32' | 'f16';

/**
 * What a Recorder's timer measures: 'dispatch' gives every dispatch its own pass and label (a
 * profile: where the time goes); 'submission' records as without a timer — consecutive
 * dispatches in one pass — between two empty passes that write the first and the last
 * timestamp, under the recorder's label: the GPU time of the whole recording as the engine runs
 * it. Per-dispatch passes cost time of their own (on lavapipe a timed empty dispatch measures
 * about 0.1 ms), so a profile's sum overstates a step made of hundreds of dispatches.
 */
export type TimedSpan = 'dispatch' | 'submission';

/**
 * Records dispatches into one command encoder and submits them as one command buffer.
 * Without a timer, consecutive dispatches share one compute pass (WebGPU orders their storage
 * accesses within a pass; each pass boundary costs the driver a little); with a timer that times
 * each dispatch, each is its own pass so that the timer can bracket it (TimedSpan). Copies and
 * clears end the pass.
 */
export class Recorder {
  readonly encoder: GPUCommandEncoder;
  private readonly cache: DispatchCache;
  private readonly staging: DataView;
  private slots = 0;
  private pass: GPUComputePassEncoder | null = null;
  /** Compute passes begun so far (one per dispatch with a timer that times each). */
  passCount = 0;
  /** Dispatches recorded so far (those of no workgroups are not recorded). */
  dispatchCount = 0;
  /**
   * Labels a timer receives from this recording (sizes a GpuTimer): timing each dispatch, one per
   * dispatch and one per copyToTextures; timing the submission, one.
   */
  timedSpans = 0;
  /**
   * What matmul() computes its products in when the caller names no variant: 'f16' (inside
   * `autocast('f16', …)`) makes the f16-operand variant a candidate (ops/matmul.ts).
   */
  matmulPrecision: MatmulPrecision = 'f32';
  /**
   * How the backward's ops write parameter gradients: 'accumulate' (+=, the default: onto what
   * is there), or 'assign' (=) inside `assignParamGrads` — the first backward of a step, whose
   * gradients start from nothing, so that no pass zeroes them first (torch's
   * zero_grad(set_to_none=True)). Activation gradients assign either way.
   */
  paramGrads: 'accumulate' | 'assign' = 'accumulate';

  /** The whole recording's timestamp writes ('submission' spans): the first written now, the last at submit. */
  private readonly span?: GPUComputePassTimestampWrites;

  constructor(readonly gpu: Gpu, private readonly timer?: GpuTimer, private readonly label = 'step', readonly timed: TimedSpan = 'dispatch') {
    this.encoder = gpu.device.createCommandEncoder({ label });
    this.cache = dispatchCache(gpu.device);
    this.staging = this.cache.takeStaging();
    if (timed === 'submission') {
      this.timedSpans = 1;
      this.span = timer?.writes(label);
      if (this.span) this.beginPass(label, { querySet: this.span.querySet, beginningOfPassWriteIndex: this.span.beginningOfPassWriteIndex }).end();
    }
  }

  /** The timer, where it times each dispatch (and copyToTextures) on its own. */
  private get perDispatch(): GpuTimer | undefined {
    return this.timed === 'dispatch' ? this.timer : undefined;
  }

  /**
   * Records `record` with matmul products in `precision` (torch.autocast's idea, for matmuls
   * only): 'f16' lets each product use f16 operands with f32 accumulation where the adapter has
   * `shader-f16` and the tuner finds it fastest. Everything else stays f32. Nests; restores.
   */
  autocast<T>(precision: MatmulPrecision, record: () => T): T {
    const outer = this.matmulPrecision;
    this.matmulPrecision = precision;
    try {
      return record();
    } finally {
      this.matmulPrecision = outer;
    }
  }

  /**
   * Records `record` (a backward) with its parameter gradients assigned (=) instead of
   * accumulated: each gradient must be written by exactly one op of it, and those it does not
   * write keep whatever they held. Nests; restores.
   */
  assignParamGrads<T>(record: () => T): T {
    const outer = this.paramGrads;
    this.paramGrads = 'assign';
    try {
      return record();
    } finally {
      this.paramGrads = outer;
    }
  }

  /** Whether the ops write parameter gradients with += (paramGrads). */
  get accumulatesParamGrads(): boolean {
    return this.paramGrads === 'accumulate';
  }

  dispatch(spec: KernelSpec, bindings: readonly (Binding | undefined)[], params: readonly Param[] | null, workgroups: readonly [number, number?, number?], label?: string): void {
    const [x, y = 1, z = 1] = workgroups;
    if (x === 0 || y === 0 || z === 0) return;
    const max = this.gpu.device.limits.maxComputeWorkgroupsPerDimension;
    if (x > max || y > max || z > max) {
      throw new GpuError(`Kernel ${spec.shader}:${spec.entry} needs ${x}×${y}×${z} workgroups; the device allows ${max} per dimension. Use a smaller batch.`, 'limits');
    }
    assertNoOverlap(spec, bindings);
    const pipeline = this.gpu.kernels.pipeline(spec);
    let slot: number | null = null;
    if (params) {
      if (this.slots >= UNIFORM_SLOTS) throw new GpuError(`More than ${UNIFORM_SLOTS} dispatches in one submission; split the work.`, 'limits');
      slot = this.slots++;
      packParams(params, this.staging, slot * UNIFORM_SLOT);
    }
    const name = label ?? `${spec.shader}:${spec.entry}`;
    const timer = this.perDispatch;
    const pass = timer ? this.beginPass(name, timer.writes(name)) : (this.pass ??= this.beginPass('dispatches'));
    this.dispatchCount++;
    if (this.timed === 'dispatch') this.timedSpans++;
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, this.cache.bindGroup(pipeline, slot, bindings));
    pass.dispatchWorkgroups(x, y, z);
    if (timer) pass.end();
  }

  private beginPass(label: string, timestampWrites?: GPUComputePassTimestampWrites): GPUComputePassEncoder {
    this.passCount++;
    return this.encoder.beginComputePass({ label, timestampWrites });
  }

  private endPass(): void {
    this.pass?.end();
    this.pass = null;
  }

  copy(src: Tensor, dst: Tensor, length = src.length): void {
    this.endPass();
    this.encoder.copyBufferToBuffer(src.buffer, src.offset, dst.buffer, dst.offset, length * 4);
  }

  /**
   * Each copy's `texels` rgba32float texels of `dst`, row by row from texel (0, 0), = the first
   * 4·texels elements of `src` (a flat view of it: ops/matmul.ts's operand textures; dst at least 16 texels wide).
   * A kernel's upload: with a timer the copies are timed together under `label`, between two
   * empty passes, so that the kernel's figure includes them.
   */
  copyToTextures(label: string, copies: readonly TextureCopy[]): void {
    // Checked before anything is recorded: a refused copy leaves the recording as it was.
    for (const { src, dst, texels } of copies) {
      if (4 * texels > src.length) throw new GpuError(`copyToTextures: ${texels} texels need ${4 * texels} elements; the source holds ${src.length}.`, 'validation');
      if (dst.width < 16 || texels > dst.width * dst.height) {
        throw new GpuError(`copyToTextures: ${texels} texels do not fit a ${dst.width} × ${dst.height} texture (rows of at least 16 texels: 256-byte copy rows).`, 'validation');
      }
    }
    this.endPass();
    const writes = this.perDispatch?.writes(label);
    if (this.timed === 'dispatch') this.timedSpans++;
    if (writes) this.beginPass(label, { querySet: writes.querySet, beginningOfPassWriteIndex: writes.beginningOfPassWriteIndex }).end();
    for (const { src, dst, texels } of copies) {
      const bytesPerRow = 16 * dst.width;
      const rows = Math.floor(texels / dst.width);
      const rest = texels % dst.width;
      if (rows > 0) this.encoder.copyBufferToTexture({ buffer: src.buffer, offset: src.offset, bytesPerRow }, { texture: dst }, [dst.width, rows]);
      if (rest > 0) this.encoder.copyBufferToTexture({ buffer: src.buffer, offset: src.offset + rows * bytesPerRow }, { texture: dst, origin: [0, rows] }, [rest, 1]);
    }
    if (writes) this.beginPass(label, { querySet: writes.querySet, endOfPassWriteIndex: writes.endOfPassWriteIndex }).end();
  }

  /** t = 0, with the encoder's own buffer clear (a memset on most drivers, no shader pass). */
  clear(t: Tensor, length = t.length): void {
    this.endPass();
    this.encoder.clearBuffer(t.buffer, t.offset, length * 4);
  }

  /** Ends recording without submitting (dry recordings that only count or list dispatches). */
  discard(): void {
    this.endPass();
    this.encoder.finish();
    this.cache.returnStaging(this.staging);
  }

  /** Uploads the parameters, submits, and waits until the GPU has finished. */
  async submit(): Promise<void> {
    this.submitNoWait();
    await this.gpu.device.queue.onSubmittedWorkDone();
    await this.gpu.kernels.checkCompiled();
  }

  /** Uploads the parameters and submits without waiting (the next queue work is ordered after it). */
  submitNoWait(): void {
    if (this.slots > 0) this.gpu.device.queue.writeBuffer(this.cache.uniforms, 0, this.staging.buffer, 0, this.slots * UNIFORM_SLOT);
    this.cache.returnStaging(this.staging); // writeBuffer has copied it
    this.endPass();
    if (this.span) this.beginPass(this.label, { querySet: this.span.querySet, endOfPassWriteIndex: this.span.endOfPassWriteIndex }).end();
    this.timer?.resolve(this.encoder);
    this.gpu.device.queue.submit([this.encoder.finish()]);
  }
}

/**
 * Every storage binding is read_write (WebGPU rejects a read-only and a writable slice of one
 * buffer in the same dispatch, and an arena is one buffer), so two bindings that overlap would
 * race: refuse them. Kernels that work in place have their own entry points.
 */
export function assertNoOverlap(spec: KernelSpec, bindings: readonly (Binding | undefined)[]): void {
  for (let i = 0; i < bindings.length; i++) {
    const a = bindings[i];
    if (!a || !isTensor(a)) continue;
    for (let j = i + 1; j < bindings.length; j++) {
      const b = bindings[j];
      if (!b || !isTensor(b) || a.buffer !== b.buffer) continue;
      const overlap = a.offset < b.offset + b.length * 4 && b.offset < a.offset + a.length * 4;
      if (overlap) {
        throw new GpuError(`Kernel ${spec.shader}:${spec.entry}: bindings ${i + 1} and ${j + 1} overlap in buffer "${a.buffer.label}"; use the in-place variant or a separate buffer.`, 'validation');
      }
    }
  }
}

export const ceilDiv = (a: number, b: number): number => Math.floor((a + b - 1) / b);
