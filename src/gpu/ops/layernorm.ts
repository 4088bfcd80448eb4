/**
 * Layer norm over the last axis (shaders/layernorm.wgsl): x[rows, C] → out[rows, C], saving
 * mean[rows] and rstd[rows] for the backward. The backward's parameter gradients are reduced
 * deterministically through a per-device scratch buffer (chunks of rows, then chunks in order).
 *
 * Two variants of the row kernels (forward, backward_dx), the same maths: 'workgroup' reduces a
 * row with a tree in workgroup memory (any device); 'subgroup' (shaders/layernorm_subgroups.wgsl)
 * with subgroupAdd, no barrier, for devices with the 'subgroups' feature (CPU adapters pay dearly
 * for barriers); it reads rows of C % 4 == 0 as vec4s (the forward several rows per workgroup), and
 * its backward takes a chunk of rows per workgroup and sums their dweight/dbias
 * partials in the same dispatch as their dx (two reads of dout and x instead of three). The two give
 * close but not bit-identical results: choose one per device and keep it (a run stays reproducible).
 */
import { GpuError, type Gpu } from '../device';
import { createTensor } from '../buffers';
import { ceilDiv, type KernelSpec, type Recorder, type Tensor } from '../kernels';
import { chosenVariant } from '../variant-choices';
import { checkReductionVariant, floorLog2, grid2d, reductionVariants, scratch, subgroupWorkgroupSize, type ReductionVariant } from './common';

/** Threads per workgroup: the row kernels' REDUCE_WG (one workgroup per row) and the per-channel kernels'. */
const WG = 64;
/** Must match ROWS_PER_CHUNK in shaders/common/layernorm_rows.wgsl. */
export const LN_ROWS_PER_CHUNK = 32;

export type LayernormVariant = ReductionVariant;

/** The shader files whose text decides the variants' results (a tuner hashes them, imports included). */
export const LAYERNORM_SHADERS: readonly string[] = ['layernorm', 'layernorm_subgroups'];

/** The variants this device can run: 'subgroup' needs the WebGPU feature 'subgroups'. */
export const layernormVariants = reductionVariants;

/**
 * The variant when the caller names none: the per-adapter tuner's choice for the shape's class
 * (⌊log₂⌋ of rows and of C; gpu/autotune-families.ts), else 'workgroup'.
 */
export function defaultLayernormVariant(gpu: Gpu, rows: number, C: number): LayernormVariant {
  return chosenVariant(gpu, 'layernorm', `r${floorLog2(rows)}.c${floorLog2(C)}`, { rows, C }, 'workgroup', layernormVariants(gpu));
}

function rowKernel(gpu: Gpu, entry: string, variant: LayernormVariant, constants: Record<string, number> = {}): KernelSpec {
  if (variant === 'workgroup') return { shader: 'layernorm', entry, constants: { REDUCE_WG: WG, ...constants } };
  checkReductionVariant(gpu, variant, 'layer norm');
  return { shader: 'layernorm_subgroups', entry, constants: { SG_WG: subgroupWorkgroupSize(gpu), ...constants } };
}

/** Rows per workgroup of the subgroup variant's layernorm_forward_vec4 (its ROWS_PER_WORKGROUP). */
const LN_FORWARD_ROWS = 4;

/**
 * out[rows,C] = (x − mean)·rstd·weight + bias; saves mean[rows], rstd[rows]. The subgroup variant
 * reads rows of C % 4 == 0 as vec4s, LN_FORWARD_ROWS rows per workgroup (layernorm_forward_vec4).
 */
export function layernormForward(
  rec: Recorder, out: Tensor, mean: Tensor, rstd: Tensor, x: Tensor, weight: Tensor, bias: Tensor,
  rows: number, C: number, eps = 1e-6, variant: LayernormVariant = defaultLayernormVariant(rec.gpu, rows, C),
): void {
  const bindings = [out, mean, rstd, x, weight, bias];
  const params = [rows, C, { f32: eps }, 0];
  if (variant === 'subgroup' && C % 4 === 0) {
    const spec = rowKernel(rec.gpu, 'layernorm_forward_vec4', variant, { ROWS_PER_WORKGROUP: LN_FORWARD_ROWS });
    rec.dispatch(spec, bindings, params, grid2d(ceilDiv(rows, LN_FORWARD_ROWS), 1));
  } else rec.dispatch(rowKernel(rec.gpu, 'layernorm_forward', variant), bindings, params, grid2d(rows, 1));
}

/**
 * dx[rows,C] = (assigned; with accumulateDx, dx +=), dweight[C] +=, dbias[C] += (parameter
 * gradients accumulate; inside Recorder.assignParamGrads they are assigned). With `sums` the
 * dweight/dbias sums are left to sums.record, one dispatch for every norm of a backward (same
 * bits); without, this call's own dispatch sums them. accumulateDx adds the norm's input gradient onto what dx holds — the
 * residual stream's `dres += dx_norm`, one dispatch instead of a scratch dx and an addInPlace.
 */
export function layernormBackward(
  rec: Recorder, dx: Tensor, dweight: Tensor, dbias: Tensor,
  dout: Tensor, x: Tensor, weight: Tensor, mean: Tensor, rstd: Tensor, rows: number, C: number,
  accumulateDx = false, variant: LayernormVariant = defaultLayernormVariant(rec.gpu, rows, C), sums?: LayernormParamSums,
): void {
  const constants = { ACCUMULATE_DX: accumulateDx ? 1 : 0 };
  const subgroupEntry = C % 4 === 0 ? 'layernorm_backward_dx_partial_vec4' : 'layernorm_backward_dx_partial';
  const dxSpec = rowKernel(rec.gpu, variant === 'subgroup' ? subgroupEntry : 'layernorm_backward_dx', variant, constants);
  if (rows === 0 || C === 0) return;
  const nchunks = ceilDiv(rows, LN_ROWS_PER_CHUNK);
  // partial[2, nchunks, C] (sums over chunks of rows): a per-device scratch grown when too small, or
  // this norm's own slice of `sums`; for 'workgroup' also corr[rows], which its dx kernel hands to
  // backward_partial.
  const partial = sums ? sums.defer(dweight, dbias, nchunks, C) : scratch(rec.gpu.device, 'layernorm-partial', 2 * nchunks * C);
  const params = [rows, C, { f32: 0 }, nchunks];
  if (variant === 'subgroup') {
    // One dispatch: each chunk's dx and its partial sums (layernorm_backward_dx_partial, in vec4s where C % 4 == 0).
    rec.dispatch(dxSpec, [dx, partial, dout, x, weight, mean, rstd], params, grid2d(nchunks, 1));
  } else {
    const corr = scratch(rec.gpu.device, 'layernorm-corr', rows);
    rec.dispatch(dxSpec, [dx, corr, dout, x, weight, mean, rstd], params, grid2d(rows, 1));
    rec.dispatch({ shader: 'layernorm', entry: 'layernorm_backward_partial' }, [partial, dout, x, mean, rstd, corr], params, [ceilDiv(C, WG), nchunks]);
  }
  if (sums) return;
  const paramsSpec = { shader: 'layernorm', entry: 'layernorm_backward_params', constants: { ACCUMULATE_PARAMS: rec.accumulatesParamGrads ? 1 : 0 } };
  rec.dispatch(paramsSpec, [dweight, dbias, partial], params, [ceilDiv(C, WG)]);
}

/** A slice's length rounded up so that the next starts on the 256-byte boundary a binding offset needs. */
const alignedPartials = (length: number): number => ceilDiv(length, 64) * 64;

/** A deferred norm: its gradients and its partials' place (element offsets), as the table row says. */
interface DeferredNorm {
  dweight: Tensor;
  dbias: Tensor;
  nchunks: number;
  C: number;
  partialAt: number;
}

/**
 * The dweight/dbias sums of every layer norm of a backward in one dispatch
 * (layernorm_backward_params_many) instead of one per norm: each norm's backward (layernormBackward
 * with `sums`) writes its chunk partials into its own slice of one buffer, and record() then sums
 * every norm's chunks, in the order backward_params sums them (the same bits). A model holds one,
 * sized for the norms its backward has (`norms`: their rows and widths); the gradients must all
 * live in one buffer (a gradient arena). On CPU adapters each dispatch costs 20–50 µs of its own.
 */
export class LayernormParamSums {
  private readonly partials: Tensor;
  private deferred: DeferredNorm[] = [];
  private used = 0;
  /** Tables already uploaded, by the deferred norms they describe. */
  private readonly tables = new Map<string, Tensor>();

  constructor(private readonly device: GPUDevice, norms: readonly { rows: number; C: number }[], label = 'layernorm-param-sums') {
    const size = norms.reduce((s, n) => s + alignedPartials(2 * ceilDiv(n.rows, LN_ROWS_PER_CHUNK) * n.C), 0);
    this.partials = createTensor(device, Math.max(size, 1), `${label}-partials`);
  }

  /** The partial[2, nchunks, C] slice of the next norm, whose sums go to dweight and dbias. */
  defer(dweight: Tensor, dbias: Tensor, nchunks: number, C: number): Tensor {
    const length = 2 * nchunks * C;
    if (this.used + length > this.partials.length) {
      throw new GpuError(`LayernormParamSums: the norms of this backward need more than the ${this.partials.length} partials it was sized for; list every norm the backward has.`, 'validation');
    }
    const first = this.deferred[0]?.dweight.buffer ?? dweight.buffer;
    if (dweight.buffer !== first || dbias.buffer !== first) throw new GpuError('LayernormParamSums: every norm\'s dweight and dbias must live in one buffer (a gradient arena).', 'validation');
    const at = this.used;
    this.deferred.push({ dweight, dbias, nchunks, C, partialAt: at });
    this.used += alignedPartials(length);
    return { buffer: this.partials.buffer, offset: this.partials.offset + 4 * at, length };
  }

  /** Forgets what was deferred without recording it: a backward whose recording failed part-way. */
  discard(): void {
    this.deferred = [];
    this.used = 0;
  }

  /** One dispatch: every deferred norm's dweight, dbias (+=, or = inside Recorder.assignParamGrads); then none is deferred. */
  record(rec: Recorder): void {
    const norms = this.deferred;
    this.discard();
    if (norms.length === 0) return;
    // Per norm: [partial_at, nchunks, C, dweight_at, dbias_at, first channel], element offsets.
    const rows: number[] = [];
    let channels = 0;
    for (const n of norms) {
      rows.push(n.partialAt, n.nchunks, n.C, n.dweight.offset / 4, n.dbias.offset / 4, channels);
      channels += n.C;
    }
    const key = rows.join(',');
    let table = this.tables.get(key);
    if (!table) {
      table = createTensor(this.device, rows.length, 'layernorm-param-sums-table', Uint32Array.from(rows));
      this.tables.set(key, table);
    }
    const grads = norms[0].dweight.buffer;
    const spec = { shader: 'layernorm', entry: 'layernorm_backward_params_many', constants: { ACCUMULATE_PARAMS: rec.accumulatesParamGrads ? 1 : 0 } };
    rec.dispatch(spec, [{ buffer: grads, offset: 0, length: grads.size / 4 }, this.partials, table], [norms.length, channels, { f32: 0 }, 0], grid2d(channels, WG));
  }

  destroy(): void {
    this.partials.buffer.destroy();
    for (const t of this.tables.values()) t.buffer.destroy();
  }
}
