/**
 * Matmul and the Linear layer built on it (shaders/matmul.wgsl; the f16-operand variants in
 * shaders/matmul_f16.wgsl, the texture-operand one in shaders/matmul_sampled.wgsl). Shapes are
 * row-major; a Linear weight is PyTorch's (out, in).
 */
import { tunedMatmulVariant } from '../autotune';
import { Arena, ArenaLayout, createTensor } from '../buffers';
import { GpuError, type Gpu } from '../device';
import { assertNoOverlap, ceilDiv, resourceBinding, type Recorder, type ResourceBinding, type Tensor } from '../kernels';
import { grid2d, scratch, subgroupWorkgroupSize, zeros } from './common';

/** 'nn': A[M,K]·B[K,N]; 'nt': A[M,K]·B[N,K]ᵀ; 'tn': A[K,M]ᵀ·B[K,N]. */
export type MatmulLayout = 'nn' | 'nt' | 'tn';
/**
 * 'vec4_f16' and 'tiled_f16' are vec4 and tiled on operands rounded to f16 (f32 accumulation and
 * output): mixed precision, for products recorded under `rec.autocast('f16', …)` on adapters with
 * `shader-f16` (F16_VARIANTS). 'vec4_sampled' is vec4 with both operands packed into rgba32float
 * textures and read through a sampler (adapters with `float32-filterable`; sampledApplies).
 */
export type MatmulVariant = 'tiled' | 'blocked' | 'vec4' | 'vec4_sampled' | 'vec4_f16' | 'tiled_f16';
export const F16_VARIANTS: readonly MatmulVariant[] = ['vec4_f16', 'tiled_f16'];
export const isF16Variant = (v: MatmulVariant): boolean => F16_VARIANTS.includes(v);

/**
 * What happens to each element x = op(a)·op(b) (+ bias) in the same pass, before it is stored
 * (shaders/matmul.wgsl, EPILOGUE):
 *   residual:  c = x + residual              (the block's x1 = proj(attn) + x; residual [M,N] is read)
 *   gelu:      c = gelu(x), grad = gelu'(x)  (grad [M,N] is written: the slope the backward multiplies
 *                                             by; without grad, a frozen layer's, nothing is saved)
 *   gelu_grad: c = x · grad                  (grad [M,N] = gelu'(h) is read: dh = (dY·W) ⊙ gelu'(h))
 * The tensor must not overlap c (it may be another slice of the same arena).
 */
export type MatmulEpilogue =
  | { kind: 'residual'; residual: Tensor }
  | { kind: 'gelu'; grad?: Tensor }
  | { kind: 'gelu_grad'; grad: Tensor };

/** shaders/common/matmul_vec4.wgsl's EPILOGUE codes. */
function epilogueCode(e: MatmulEpilogue | undefined): number {
  if (!e) return 0;
  if (e.kind === 'residual') return 1;
  if (e.kind === 'gelu') return e.grad ? 2 : 4;
  return 3;
}

/** matmul_vec4: invocations per workgroup (each owns 8 columns) and rows per workgroup. */
const VEC4_LANES = 8;
const VEC4_ROWS = 16;

/**
 * Whether matmul_vec4 computes this product itself (else 'vec4' falls back to 'blocked'): N a
 * multiple of 4 (B and C are read and written in vec4s along N), and K a multiple of 4 for 'nn'
 * and 'nt' (A, and B for 'nt', are transposed in vec4s along K) or M a multiple of 4 for 'tn'
 * (Aᵀ is read as given, in vec4s along M). Without a layout: the 'nt' rule (N and K).
 */
export const vec4Aligned = (N: number, K: number, layout: MatmulLayout = 'nt', M?: number): boolean =>
  N % 4 === 0 && (layout === 'tn' ? M !== undefined && M % 4 === 0 : K % 4 === 0);

/** The power of two ≥ x (≥ 16): a side of a 'vec4_sampled' operand texture (operandTexture). */
const textureSide = (x: number): number => Math.max(16, 2 ** Math.ceil(Math.log2(Math.max(1, x))));

/**
 * The [width, height] of a 'vec4_sampled' operand texture holding `texels` texels flat, row by
 * row (shaders/matmul_sampled.wgsl): about square, both sides powers of two.
 */
const flatTextureSize = (texels: number): [number, number] => {
  const width = textureSide(Math.ceil(Math.sqrt(texels)));
  return [width, textureSide(ceilDiv(texels, width))];
};

/**
 * The most texels an operand texture may hold: its shader addresses texel j < 2^22 exactly in f32.
 * Its sides are then at most 2048, within every WebGPU device's maxTextureDimension2D (≥ 8192).
 */
const MAX_OPERAND_TEXELS = 2 ** 22;

/**
 * Whether 'vec4_sampled' computes this product itself (else it is 'vec4'): the device samples
 * rgba32float textures (`float32-filterable`), vec4Aligned, and Aᵀ's K·M'/4 and B's K·N/4 texels
 * are each at most MAX_OPERAND_TEXELS (16 M elements).
 */
export function sampledApplies(gpu: Gpu, s: { layout: MatmulLayout; M: number; N: number; K: number }): boolean {
  return gpu.hasFloat32Filterable && vec4Aligned(s.N, s.K, s.layout, s.M) &&
    s.K * ceilDiv(s.M, 4) <= MAX_OPERAND_TEXELS && (s.K * s.N) / 4 <= MAX_OPERAND_TEXELS;
}

/**
 * The static guess for an adapter. On CPU-emulated adapters, where barriers are costly, vec4 is
 * fastest (the kernel lab, bench/results/kernels.json: tiled runs at about 0.2× of it on lavapipe,
 * blocked at 0.3×), and on SwiftShader vec4_sampled's kernel runs 1.4–1.7× faster than vec4's, its
 * packing pass aside (bench/README.md, the SwiftShader notes); on real GPUs shared-memory tiling
 * is the classic winner.
 */
export function staticMatmulVariant(gpu: Gpu): MatmulVariant {
  if (gpu.adapter.kind === 'hardware') return 'tiled';
  return gpu.adapter.kind === 'swiftshader' && gpu.hasFloat32Filterable ? 'vec4_sampled' : 'vec4';
}

/** Whether a product may use the f16 variants: recorded under autocast('f16'), on a device with shader-f16, vec4-aligned. */
export const f16Applies = (gpu: Gpu, s: { layout: MatmulLayout; M: number; N: number; K: number; f16?: boolean }): boolean =>
  !!s.f16 && gpu.hasF16 && vec4Aligned(s.N, s.K, s.layout, s.M);

/**
 * The static guess for one product: where f16Applies (mixed precision asked for it) the f16 twin
 * of staticMatmulVariant (tiled_f16 on hardware, vec4_f16 on CPU adapters), else staticMatmulVariant.
 */
export function staticVariantFor(gpu: Gpu, s: { layout: MatmulLayout; M: number; N: number; K: number; f16?: boolean }): MatmulVariant {
  if (!f16Applies(gpu, s)) return staticMatmulVariant(gpu);
  return gpu.adapter.kind === 'hardware' ? 'tiled_f16' : 'vec4_f16';
}

/**
 * The variant for a product when the caller does not choose one. Given the product's shape:
 * the per-adapter tuner's choice for its shape class once tuned (gpu/autotune.ts: timed before
 * recording, never here; fixed per device from the first ask), else the static guess.
 * Without a shape: the static guess.
 */
export function defaultMatmulVariant(gpu: Gpu, layout?: MatmulLayout, M?: number, N?: number, K?: number, f16 = false): MatmulVariant {
  if (layout === undefined || M === undefined || N === undefined || K === undefined) return staticMatmulVariant(gpu);
  return tunedMatmulVariant(gpu, { layout, M, N, K, f16 });
}

/**
 * The flag matmul_f16.wgsl's packs set when an operand is outside f16's range (u32, one per
 * device; the loss scaler reads and clears it: ops/adamw.ts lossScaleUpdate).
 */
export const f16OverflowFlag = (device: GPUDevice): Tensor => scratch(device, 'matmul:f16-overflow', 1);

/** Bound as aux when there is no epilogue: its own buffer, since bias may be zeros() already (and aux is read_write). */
const noAux = (device: GPUDevice): Tensor => scratch(device, 'matmul-no-aux', 64);

/**
 * Where matmul_vec4's transposed operand of `length` elements goes: one scratch per power-of-two
 * size class (ops/common.ts scratch, key 'matmul:<name>:<log₂>'), allocated at
 * the class's full size on first use and never grown, so the buffer a product binds stays the same
 * from its first recording on (a repeated step makes no bind groups), and all classes together
 * hold less than four times the largest operand (a geometric series).
 */
function transposeScratch(device: GPUDevice, name: 'aT' | 'bT' | 'abT' | 'aH' | 'bH', length: number): Tensor {
  const sizeClass = Math.max(6, Math.ceil(Math.log2(length)));
  const limit = Math.floor(Math.min(device.limits.maxBufferSize, device.limits.maxStorageBufferBindingSize) / 4);
  const t = scratch(device, `matmul:${name}:${sizeClass}`, Math.max(length, Math.min(2 ** sizeClass, limit)));
  return { buffer: t.buffer, offset: t.offset, length };
}

/** out[K, M'] = x[M,K]ᵀ, M' = M rounded up to 4 (the padding rows repeat row M − 1); K % 4 == 0. */
function transposeVec4(rec: Recorder, out: Tensor, x: Tensor, M: number, K: number): void {
  rec.dispatch({ shader: 'matmul', entry: 'transpose_vec4' }, [out, x], [M, 0, K, 0], [ceilDiv(K / 4, 8), ceilDiv(ceilDiv(M, 4), 8)]);
}

/**
 * An 'nt' product's Aᵀ [K, M'] and Bᵀ [K, N] by one dispatch (transpose_vec4_pair), into one
 * scratch: Aᵀ first, Bᵀ at the next 256-byte boundary (a binding's offset alignment).
 */
function transposePair(rec: Recorder, a: Tensor, b: Tensor, M: number, N: number, K: number): [Tensor, Tensor] {
  const aLength = K * 4 * ceilDiv(M, 4);
  const bAt = ceilDiv(aLength, 64) * 64; // elements: 256 bytes
  const both = transposeScratch(rec.gpu.device, 'abT', bAt + K * N);
  const aT = { buffer: both.buffer, offset: both.offset, length: aLength };
  const bT = { buffer: both.buffer, offset: both.offset + 4 * bAt, length: K * N };
  const rowQuads = Math.max(ceilDiv(M, 4), N / 4);
  rec.dispatch({ shader: 'matmul', entry: 'transpose_vec4_pair' }, [both, a, b], [M, N, K, bAt / 4], [ceilDiv(K / 4, 8), ceilDiv(rowQuads, 8), 2]);
  return [aT, bT];
}

/** Tiles of transpose_weights: 8 × 8 blocks of 4 × 4 elements. */
const TRANSPOSE_TILE = 32;

/**
 * The K-major copies of the weights of `params` that `copies` names: Wᵀ [in, out] of a weight
 * stored PyTorch's way, [out, in, …], for those whose two sizes are multiples of 4 (what vec4
 * transposes; the others stay 'nt' products).
 */
export function kMajorLayout(params: ArenaLayout, copies: (name: string) => boolean): ArenaLayout {
  const layout = new ArenaLayout();
  for (const e of params.entries) {
    if (!copies(e.name) || e.shape.length < 2) continue;
    const out = e.shape[0], inF = e.length / out;
    if (out % 4 === 0 && inF % 4 === 0) layout.add(e.name, [inF, out]);
  }
  return layout;
}

/**
 * Linear weights again, K-major (kMajorLayout), all rewritten by one dispatch (transpose_weights).
 * A forward x·Wᵀ on a copy is an 'nn' product: the vec4 products read B K-major, so an 'nt' one
 * transposes W first, one dispatch per product. For a frozen teacher, written once on upload. (A
 * student's copies, rewritten by one dispatch at the start of each step, made its step 1.03–1.04×
 * slower on lavapipe: each 'nt' product's own transpose leaves Wᵀ hot in the cache for it.)
 */
export class KMajorWeights {
  readonly arena: Arena;
  /** transpose_weights' table: per weight [in_at, out_at (vec4s), rows, cols, first tile]. */
  private readonly table: Tensor;
  private readonly tiles: number;

  constructor(device: GPUDevice, readonly params: Arena, copies: (name: string) => boolean, label: string) {
    this.arena = new Arena(device, kMajorLayout(params.layout, copies), label);
    const rows: number[] = [];
    let tiles = 0;
    for (const k of this.arena.layout.entries) {
      const [inF, out] = k.shape;
      rows.push(params.layout.get(k.name).start / 4, k.start / 4, out, inF, tiles);
      tiles += ceilDiv(out, TRANSPOSE_TILE) * ceilDiv(inF, TRANSPOSE_TILE);
    }
    this.tiles = tiles;
    this.table = createTensor(device, Math.max(rows.length, 1), `${label}-table`, Uint32Array.from(rows));
  }

  /** Wᵀ of `name`, if it is copied. */
  weight(name: string): Tensor | undefined {
    return this.arena.layout.has(name) ? this.arena.tensor(name) : undefined;
  }

  /** Rewrites every copy from the parameters as they are when the dispatch runs. */
  record(rec: Recorder): void {
    const count = this.arena.layout.entries.length;
    if (count === 0) return;
    rec.dispatch({ shader: 'matmul', entry: 'transpose_weights' }, [this.arena.all, this.params.all, this.table], [count, 0, 0, 0], grid2d(this.tiles, 1));
  }

  get bytes(): number {
    return this.arena.layout.bytes;
  }

  destroy(): void {
    this.arena.destroy();
    this.table.buffer.destroy();
  }
}

interface OperandTextures {
  a: ResourceBinding;
  b: ResourceBinding;
  sampler: ResourceBinding;
}
interface OperandTexture {
  texture: GPUTexture;
  binding: ResourceBinding;
}
const operandTextureCache = new WeakMap<GPUDevice, Map<string, OperandTexture>>();
const nearestSamplers = new WeakMap<GPUDevice, ResourceBinding>();

/**
 * A 'vec4_sampled' texture for `texels` texels (flatTextureSize): one rgba32float texture per role
 * and size class, made on first use and kept, so a repeated step binds the same ones (no bind
 * groups made); the sides are powers of two, so a role has few classes. Roles: 'a' and 'b', the
 * product's Aᵀ and B; 'a-given' and 'b-given', an operand the pack transposes, copied in as it is
 * stored. Products recorded one after another share them, as they share scratch buffers
 * (ops/common.ts scratch).
 */
function operandTexture(device: GPUDevice, role: 'a' | 'b' | 'a-given' | 'b-given', texels: number): OperandTexture {
  let byKey = operandTextureCache.get(device);
  if (!byKey) operandTextureCache.set(device, (byKey = new Map()));
  const size = flatTextureSize(texels);
  const key = `${role}:${size.join('x')}`;
  let t = byKey.get(key);
  if (!t) {
    const texture = device.createTexture({
      label: `matmul:${role}-texture:${size.join('x')}`, size, format: 'rgba32float',
      usage: GPUTextureUsage.TEXTURE_BINDING | GPUTextureUsage.COPY_DST | GPUTextureUsage.STORAGE_BINDING,
    });
    byKey.set(key, (t = { texture, binding: resourceBinding(texture.createView()) }));
  }
  return t;
}

/**
 * The shader of a 'vec4', 'vec4_sampled' or 'vec4_f16' product: the twin that shares Aᵀ's row
 * quads across each subgroup (common/matmul_vec4_subgroups.wgsl: each lane loads one of the four
 * and subgroupBroadcast hands them round; the same bits, a quarter of the loads) on adapters with
 * subgroups of at most VEC4_LANES lanes (lavapipe 8, SwiftShader 4), where a workgroup is one or
 * two whole subgroups and lanes 0–3 of each are surely there. Wider subgroups (GPUs: 32, 64) would
 * hold a workgroup's 8 invocations at lanes WebGPU does not name; no such adapter has run it.
 */
export function vec4ProductShader(gpu: Gpu, variant: 'vec4' | 'vec4_sampled' | 'vec4_f16'): string {
  const shader = { vec4: 'matmul', vec4_sampled: 'matmul_sampled', vec4_f16: 'matmul_f16' }[variant];
  return gpu.hasSubgroups && subgroupWorkgroupSize(gpu) <= VEC4_LANES ? `${shader}_subgroups` : shader;
}

/**
 * Whether the adapter's subgroups have exactly VEC4_LANES lanes, so that a matmul_vec4 workgroup
 * is one subgroup: matmul_subgroups then shares op(A)'s 16 values at each k two per lane
 * (EIGHT_LANES) and reads an 'nn' or 'nt' product's A [M, K] as stored, along K (A_ALONG_K), not
 * transposed. On lavapipe (8 lanes) both were faster; four lanes reading all 16 rows along K
 * (SwiftShader's 4-lane subgroups) ran 1.1× slower than transposing A first, so those transpose.
 */
export function subgroupsOfEight(gpu: Gpu): boolean {
  return gpu.hasSubgroups && gpu.subgroupSizes?.min === VEC4_LANES && gpu.subgroupSizes.max === VEC4_LANES;
}

/**
 * Aᵀ [K, M'] and B [K, N] in their textures, flat (shaders/matmul_sampled.wgsl), and the nearest
 * sampler that reads them. Every operand is first copied into a texture as it is stored
 * (Recorder.copyToTextures, one timed span): an operand stored K-major ('tn' A, 'nn' and 'tn' B)
 * straight into the product's, the others ('nt' A and B, 'nn' A) into a given texture that one
 * pack dispatch transposes from (pack_operands for 'nt', pack_a for 'nn').
 */
function operandsInTextures(rec: Recorder, a: Tensor, b: Tensor, M: number, N: number, K: number, layout: MatmulLayout): OperandTextures {
  const device = rec.gpu.device;
  const mq = ceilDiv(M, 4);
  const ta = operandTexture(device, 'a', K * mq), tb = operandTexture(device, 'b', (K * N) / 4);
  let sampler = nearestSamplers.get(device);
  // Nearest, repeating along u (the flat addressing wraps there), clamped along v.
  if (!sampler) nearestSamplers.set(device, (sampler = resourceBinding(device.createSampler({ label: 'matmul:nearest-flat', addressModeU: 'repeat' }))));
  const aGiven = layout === 'tn' ? null : operandTexture(device, 'a-given', (M * K) / 4);
  const bGiven = layout === 'nt' ? operandTexture(device, 'b-given', (N * K) / 4) : null;
  rec.copyToTextures('matmul_sampled:copy_operands', [
    aGiven ? { src: a, dst: aGiven.texture, texels: (M * K) / 4 } : { src: a, dst: ta.texture, texels: K * mq },
    bGiven ? { src: b, dst: bGiven.texture, texels: (N * K) / 4 } : { src: b, dst: tb.texture, texels: (K * N) / 4 },
  ]);
  if (layout === 'nt') {
    rec.dispatch({ shader: 'matmul_sampled', entry: 'pack_operands' }, [aGiven!.binding, bGiven!.binding, ta.binding, tb.binding, undefined, sampler],
      [M, N, K, 0], [ceilDiv(Math.max(mq, N / 4), 8), ceilDiv(K / 4, 8), 2]);
  } else if (layout === 'nn') {
    rec.dispatch({ shader: 'matmul_sampled', entry: 'pack_a' }, [aGiven!.binding, undefined, ta.binding, undefined, undefined, sampler], [M, N, K, 0], [ceilDiv(mq, 8), ceilDiv(K / 4, 8)]);
  }
  return { a: ta.binding, b: tb.binding, sampler };
}

/**
 * Aᵀ [K, M'] and B [K, N] as f16 pairs (scratch 'aH', 'bH'; four-byte elements, half as many):
 * transposed where the layout stores them M- or N-major, cast where already K-major.
 */
function packF16(rec: Recorder, a: Tensor, b: Tensor, M: number, N: number, K: number, layout: MatmulLayout): [Tensor, Tensor] {
  const device = rec.gpu.device;
  const flag = f16OverflowFlag(device);
  const Mp = 4 * ceilDiv(M, 4);
  const aH = transposeScratch(device, 'aH', (K * Mp) / 2);
  const bH = transposeScratch(device, 'bH', (K * N) / 2);
  const pack = (out: Tensor, x: Tensor, rows: number, transposed: boolean) => {
    if (transposed) rec.dispatch({ shader: 'matmul_f16', entry: 'pack_f16_transposed' }, [out, x, flag], [rows, 0, K, 0], [ceilDiv(K / 4, 8), ceilDiv(ceilDiv(rows, 4), 8)]);
    else rec.dispatch({ shader: 'matmul_f16', entry: 'pack_f16' }, [out, x, flag], [(rows * K) / 4, 0, 0, 0], grid2d((rows * K) / 4, 256));
  };
  pack(aH, a, M, layout !== 'tn');
  pack(bH, b, N, layout === 'nt');
  return [aH, bH];
}

/**
 * c[M,N] (=|+=) epilogue(op(a)·op(b) (+ bias[N])). 'vec4' falls back to 'blocked' unless
 * vec4Aligned(N, K, layout, M); for 'nn' and 'nt' it first transposes its operands into scratch
 * tensors (transposeScratch). 'vec4_sampled' puts both into textures first (operandsInTextures)
 * and falls back to 'vec4' where sampledApplies does not (asking for it on a device without
 * `float32-filterable` is an error). 'vec4_f16' and 'tiled_f16' pack both operands into f16 scratch first
 * (they need vec4Aligned and `shader-f16`; without them it is an error, as the tuner never picks them there).
 * An epilogue assigns: with `accumulate` it is an error. Without a variant: the tuner's choice
 * for the product's class, which under `rec.autocast('f16', …)` may be an f16 variant.
 * `biasGrad` ('tn' only, dW = dYᵀ·X): also biasGrad[M] (+= with `accumulate`, else =) Σ_k a[k, m], the Linear's db — inside
 * the product with 'vec4' and 'vec4_sampled' (the dY rows they read anyway), else by bias_backward after it (the f16
 * variants too: db sums f32 values, not their f16 roundings).
 */
export function matmul(
  rec: Recorder, c: Tensor, a: Tensor, b: Tensor, bias: Tensor | null,
  M: number, N: number, K: number,
  layout: MatmulLayout = 'nn', accumulate = false,
  variant: MatmulVariant = defaultMatmulVariant(rec.gpu, layout, M, N, K, rec.matmulPrecision === 'f16'),
  epilogue?: MatmulEpilogue, biasGrad?: Tensor,
): void {
  if (biasGrad && (layout !== 'tn' || bias)) throw new GpuError(`matmul: biasGrad is for 'tn' products without a bias (dW = dYᵀ·X), got ${layout}${bias ? ' with a bias' : ''}.`, 'validation');
  if (epilogue && accumulate) {
    throw new GpuError(`matmul: the '${epilogue.kind}' epilogue assigns its result; it cannot be combined with accumulate (+=).`, 'validation');
  }
  const device = rec.gpu.device;
  const constants = {
    TRANS_A: layout === 'tn' ? 1 : 0,
    TRANS_B: layout === 'nt' ? 1 : 0,
    HAS_BIAS: bias ? 1 : 0,
    ACCUMULATE: accumulate ? 1 : 0,
    EPILOGUE: epilogueCode(epilogue),
  };
  const aux = !epilogue ? noAux(device) : epilogue.kind === 'residual' ? epilogue.residual : (epilogue.grad ?? noAux(device));
  if (variant === 'vec4_sampled' && !rec.gpu.hasFloat32Filterable) {
    throw new GpuError(`matmul: the vec4_sampled variant needs an adapter with float32-filterable (${rec.gpu.adapter.description} has none); use vec4.`, 'validation');
  }
  // vec4_sampled falls back to vec4 (textures that would not fit), vec4 to blocked (unaligned).
  const fallback = (w: MatmulVariant): MatmulVariant =>
    w === 'vec4_sampled' && !sampledApplies(rec.gpu, { layout, M, N, K }) ? fallback('vec4') : w === 'vec4' && !vec4Aligned(N, K, layout, M) ? 'blocked' : w;
  const v = fallback(variant);
  const bindings = [c, a, b, bias ?? zeros(device), aux];
  if (isF16Variant(v)) {
    if (!rec.gpu.hasF16 || !vec4Aligned(N, K, layout, M)) {
      throw new GpuError(`matmul: the ${v} variant needs an adapter with shader-f16 and N, K (M for 'tn') multiples of 4; got ${layout} ${M}×${N}×${K}${rec.gpu.hasF16 ? '' : ' on an adapter without shader-f16'}.`, 'validation');
    }
    const spec = v === 'vec4_f16'
      ? { shader: vec4ProductShader(rec.gpu, 'vec4_f16'), entry: 'matmul_vec4_f16', constants: { ...constants, LANES: VEC4_LANES } }
      : { shader: 'matmul_f16', entry: 'matmul_tiled_f16', constants };
    assertNoOverlap(spec, bindings);
    const [aH, bH] = packF16(rec, a, b, M, N, K, layout);
    const groups: [number, number] = v === 'vec4_f16' ? [ceilDiv(N, 8 * VEC4_LANES), ceilDiv(M, VEC4_ROWS)] : [ceilDiv(N, 64), ceilDiv(M, 64)];
    rec.dispatch(spec, [c, aH, bH, bindings[3], aux], [M, N, K, 0], groups);
    if (biasGrad) biasBackward(rec, biasGrad, a, K, M, accumulate);
    return;
  }
  if (v === 'vec4' || v === 'vec4_sampled') {
    const sampled = v === 'vec4_sampled';
    const vec4Constants = { ...constants, LANES: VEC4_LANES, BIAS_GRAD: biasGrad ? 1 : 0 };
    // vec4_sampled: 16 k per loop iteration (UNROLL_K, shaders/common/matmul_vec4.wgsl), for SwiftShader.
    // B is read K-major; A as Aᵀ, transposed first, except where the subgroup twin reads it along K.
    const shader = vec4ProductShader(rec.gpu, v);
    const eightLanes = shader === 'matmul_subgroups' && subgroupsOfEight(rec.gpu);
    const aAlongK = eightLanes && layout !== 'tn';
    const spec = sampled
      ? { shader, entry: 'matmul_vec4_sampled', constants: { ...vec4Constants, UNROLL_K: 1 } }
      : { shader, entry: 'matmul_vec4', constants: eightLanes ? { ...vec4Constants, EIGHT_LANES: 1, A_ALONG_K: aAlongK ? 1 : 0 } : vec4Constants };
    if (biasGrad) bindings[3] = biasGrad; // the bias binding is free in 'tn' (no bias): db goes there
    // The product binds copies of a and b: check the caller's tensors as every variant's are.
    assertNoOverlap(spec, bindings);
    const groups: [number, number] = [ceilDiv(N, 8 * VEC4_LANES), ceilDiv(M, VEC4_ROWS)];
    if (sampled) {
      // Aᵀ [K, M'] and B [K, N] in textures, read with its sampler.
      const t = operandsInTextures(rec, a, b, M, N, K, layout);
      rec.dispatch(spec, [c, t.a, t.b, bindings[3], aux, t.sampler], [M, N, K, 0], groups);
      return;
    }
    let aT = a;
    let bK = b;
    if (layout === 'nn' && !aAlongK && M > 0 && K > 0) {
      aT = transposeScratch(device, 'aT', K * 4 * ceilDiv(M, 4));
      transposeVec4(rec, aT, a, M, K);
    }
    if (layout === 'nt' && N > 0 && K > 0) {
      if (aAlongK) {
        bK = transposeScratch(device, 'bT', K * N);
        transposeVec4(rec, bK, b, N, K);
      } else if (M > 0) [aT, bK] = transposePair(rec, a, b, M, N, K);
    }
    rec.dispatch(spec, [c, aT, bK, bindings[3], aux], [M, N, K, 0], groups);
    return;
  }
  const groups: [number, number] = [ceilDiv(N, 64), ceilDiv(M, 64)];
  rec.dispatch({ shader: 'matmul', entry: `matmul_${v}`, constants }, bindings, [M, N, K, 0], groups);
  if (biasGrad) biasBackward(rec, biasGrad, a, K, M, accumulate);
}

/** dbias[N] (=|+=) Σ_m dy[m, n]. */
export function biasBackward(rec: Recorder, dbias: Tensor, dy: Tensor, M: number, N: number, accumulate = true): void {
  rec.dispatch({ shader: 'matmul', entry: 'bias_backward', constants: { ACCUMULATE: accumulate ? 1 : 0 } }, [dbias, dy], [M, N, 0, 0], [ceilDiv(N, 64)]);
}

/**
 * y[R,out] = epilogue(x[R,in] · wᵀ + b), w (out,in); given w's K-major copy wT [in, out]
 * (KMajorWeights) an 'nn' product on it, which transposes nothing.
 */
export function linearForward(
  rec: Recorder, y: Tensor, x: Tensor, w: Tensor, b: Tensor | null, R: number, inF: number, outF: number,
  epilogue?: MatmulEpilogue, wT?: Tensor,
): void {
  if (wT) matmul(rec, y, x, wT, b, R, outF, inF, 'nn', false, undefined, epilogue);
  else matmul(rec, y, x, w, b, R, outF, inF, 'nt', false, undefined, epilogue);
}

/**
 * dx[R,in] = dxEpilogue(dy·w) (assigned; pass dx = null to skip), dw += dyᵀ·x, db += Σ_rows dy.
 * Activation gradients assign; parameter gradients accumulate, or assign where the recorder says
 * so (Recorder.assignParamGrads).
 */
export function linearBackward(
  rec: Recorder, dx: Tensor | null, dw: Tensor, db: Tensor | null,
  dy: Tensor, x: Tensor, w: Tensor, R: number, inF: number, outF: number,
  dxEpilogue?: MatmulEpilogue,
): void {
  if (dx) matmul(rec, dx, dy, w, null, R, inF, outF, 'nn', false, undefined, dxEpilogue);
  matmul(rec, dw, dy, x, null, outF, inF, R, 'tn', rec.accumulatesParamGrads, undefined, undefined, db ?? undefined);
}
