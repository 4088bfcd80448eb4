/**
 * The training losses (shaders/loss.wgsl): MAE's masked pixel MSE, DMAE's feature distillation
 * loss, their backwards, and a generic deterministic sum. MAE's norm_pix targets are built by
 * patchifyTarget(..., normPix = true) in ops/patch.ts, in the same pass as the patchify.
 *
 * Every output is assigned (=). Every reduction has a fixed order (per-workgroup partials, then
 * one small dispatch), so the same inputs give bit-identical losses and gradients. The scratch
 * these need (partial sums, per-row distillation losses) is common.ts's per-device scratch,
 * grown when too small, never per call. The MAE loss keeps Σmask in its own output, loss[1],
 * for its backward.
 *
 * The distillation loss's row kernels come in two variants, the same maths: 'workgroup'
 * (loss.wgsl: a row per 256-invocation workgroup, summed by a tree in workgroup memory, any
 * device and width) and 'subgroup' (loss_subgroups.wgsl: rows of C % 4 == 0 read as vec4s,
 * several per workgroup of one subgroup, summed by subgroupAdd, no barrier; CPU adapters pay
 * dearly for barriers). Close, not bit-identical: the per-adapter tuner keeps one per shape class.
 */
import { GpuError, type Gpu } from '../device';
import { ceilDiv, type KernelSpec, type Recorder, type Tensor } from '../kernels';
import { chosenVariant } from '../variant-choices';
import { checkReductionVariant, floorLog2, grid2d, MAX_WORKGROUPS_PER_DIM, reductionVariants, scratch, subgroupWorkgroupSize, type ReductionVariant } from './common';

export type DistillKind = 'l1' | 'l2';

/** Workgroup width of the generic sum; the partial count is at most this (one per thread of the final pass). */
const SUM_WG = 256;
/** Elements a thread of reduce_sum_partial should sum at least, before more workgroups are worth it. */
const SUM_PER_THREAD = 8;
/** Sums of at least this many elements read x as vec4s (reduce_sum_partial_vec4); below, one dispatch's overhead dominates. */
const SUM_VEC4_MIN = 65536;
const EW_WG = 256; // mae_loss_backward
/** Patches (one per thread) per workgroup of mae_patch_loss, i.e. per partial pair; fixes the summation order. */
const PATCH_WG = 64;

/** Row kernels (one workgroup per row): a narrower workgroup for short rows wastes fewer lanes. */
const rowWorkgroup = (cols: number): number => (cols <= 64 ? 64 : cols <= 128 ? 128 : 256);

// ---- generic sum -----------------------------------------------------------------------------

/**
 * The first pass of sumReduce: 'vec4' reads x as vec4s (reduce_sum_partial_vec4), 'scalar' one
 * element at a time (reduce_sum_partial); 'auto' takes vec4 for n ≥ 65536 when x's view holds
 * 4⌈n/4⌉ elements (a gradient arena always does), scalar otherwise. The two sum in different
 * fixed orders: each is deterministic, their bits differ.
 */
export type SumVariant = 'auto' | 'vec4' | 'scalar';

/**
 * out[0] = scale · Σ_{i<n} x[i]  ('sum'),  scale · Σ_{i<n} x[i]²  ('sumsq'),
 * scale · sqrt(Σ_{i<n} x[i]²) = scale · ‖x‖₂  ('norm'), or scale · sqrt(Σ_{i<n} x[i])
 * ('sqrtsum': a norm from partial sums of squares, adamwStep's). Assigned.
 *
 * Deterministic: G workgroups each sum a strided share (every thread in order, then a fixed
 * tree), and a second one-workgroup dispatch sums the partials in order. Scalar pass:
 * G = min(256, ⌈n / 2048⌉) partials, a thread's share is elements k·256G apart. Vec4 pass (big
 * sums): G = min(256, ⌈n / 8192⌉) workgroups own contiguous blocks of vec4s; a thread sums every
 * 256th vec4 of its block in four lanes, adds them as (x + y) + (z + w) and leaves its own
 * partial (256·G of them, no tree until the final pass: barriers are costly on CPU adapters).
 * G and the pass depend only on n and x's length, so the same x gives the same bits on the
 * same device.
 * `out` may be any tensor view (its element 0 is written), e.g. one slot of a small stats tensor.
 *
 * Uses: a mean is scale = 1/n; the global gradient norm is sumReduce(rec, out, grads.all, n,
 * 'norm') (adamw.ts's globalGradNorm). Float32 throughout: for tens of millions of terms of very
 * different sizes expect float32 rounding (the strided partials keep it close to pairwise).
 */
export function sumReduce(rec: Recorder, out: Tensor, x: Tensor, n: number, op: 'sum' | 'sumsq' | 'norm' | 'sqrtsum' = 'sum', scale = 1, variant: SumVariant = 'auto'): void {
  const nq = ceilDiv(n, 4);
  const fits = x.length >= Math.max(4, 4 * nq); // a vec4 view binds whole vec4s (16 bytes at least)
  if (variant === 'vec4' && !fits) throw new GpuError(`sumReduce: the vec4 pass needs a view of ${4 * nq} elements for n = ${n}; this one has ${x.length}.`, 'validation');
  const vec4 = variant === 'vec4' || (variant === 'auto' && n >= SUM_VEC4_MIN && fits);
  const groups = Math.max(1, Math.min(SUM_WG, ceilDiv(vec4 ? nq : n, SUM_WG * SUM_PER_THREAD)));
  // The vec4 pass leaves one partial per thread (no in-workgroup tree), the scalar one per workgroup.
  const count = vec4 ? groups * SUM_WG : groups;
  const partials = scratch(rec.gpu.device, 'loss-sum-partials', count);
  rec.dispatch(
    { shader: 'loss', entry: vec4 ? 'reduce_sum_partial_vec4' : 'reduce_sum_partial', constants: { REDUCE_WG: SUM_WG, SQUARE: op === 'sumsq' || op === 'norm' ? 1 : 0 } },
    [partials, x], [0, 0, n, { f32: 0 }], [groups],
  );
  rec.dispatch(
    { shader: 'loss', entry: 'reduce_sum_final', constants: { REDUCE_WG: SUM_WG, ROOT: op === 'norm' || op === 'sqrtsum' ? 1 : 0 } },
    [out, partials], [0, 0, count, { f32: scale }], [1],
  );
}

// ---- MAE ------------------------------------------------------------------------------------

/**
 * MAE's forward_loss. pred, target [N·L, P]; mask [N·L] as f32 (1 = masked, counted; 0 = kept).
 * lossPerPatch[N·L] = mean over P of (pred − target)² (all patches; kept for per-patch maps);
 * loss[0] = Σ lossPerPatch·mask / Σ mask and loss[1] = Σ mask, which maeLossBackward reads:
 * `loss` needs 2 elements. All assigned. Pass norm_pix targets already normalised
 * (patchifyTarget with normPix). Σmask = 0 gives NaN, as PyTorch.
 *
 * Two dispatches: a thread per patch writes its loss, and each workgroup of PATCH_WG patches
 * its (Σ loss·mask, Σ mask) into a scratch of partial pairs; one workgroup adds the pairs in order.
 */
export function maeLossForward(
  rec: Recorder, loss: Tensor, lossPerPatch: Tensor, pred: Tensor, target: Tensor, mask: Tensor,
  N: number, L: number, P: number,
): void {
  if (loss.length < 2) throw new GpuError(`maeLossForward: loss holds (loss, Σmask) and needs 2 elements; this view has ${loss.length}.`, 'validation');
  const rows = N * L;
  const groups = ceilDiv(rows, PATCH_WG);
  const partials = scratch(rec.gpu.device, 'loss-mae-partials', 2 * groups);
  rec.dispatch(
    { shader: 'loss', entry: 'mae_patch_loss', constants: { REDUCE_WG: PATCH_WG } },
    [lossPerPatch, partials, pred, target, mask], [rows, P, 0, { f32: 0 }], grid2d(rows, PATCH_WG),
  );
  rec.dispatch({ shader: 'loss', entry: 'mae_loss_final', constants: { REDUCE_WG: SUM_WG } }, [loss, partials], [0, 0, groups, { f32: 0 }], [1]);
}

/**
 * dpred[N·L, P] = mask · 2(pred − target)/P / Σmask · dloss (assigned); dloss is the upstream
 * gradient of the scalar loss (1 for the plain MAE objective).
 *
 * `loss` is maeLossForward's output: Σmask is its element 1, so the backward depends on the
 * forward of the same step having been recorded (or run) before it, with the same mask — in the
 * engine it always is, in the same submission — and sums nothing itself.
 */
export function maeLossBackward(
  rec: Recorder, dpred: Tensor, pred: Tensor, target: Tensor, mask: Tensor, loss: Tensor,
  N: number, L: number, P: number, dloss = 1,
): void {
  if (loss.length < 2) throw new GpuError(`maeLossBackward: loss is maeLossForward's (loss, Σmask) and needs 2 elements; this view has ${loss.length}.`, 'validation');
  const rows = N * L;
  rec.dispatch({ shader: 'loss', entry: 'mae_loss_backward' }, [dpred, pred, target, mask, loss], [rows, P, 0, { f32: dloss }], grid2d(rows * P, EW_WG));
}

// ---- DMAE -----------------------------------------------------------------------------------

export type DistillVariant = ReductionVariant;

/** The shader files whose text decides the variants' results (a tuner hashes them, imports included). */
export const DISTILL_SHADERS: readonly string[] = ['loss', 'loss_subgroups'];

/** Rows per workgroup of the subgroup variant (its ROWS_PER_WORKGROUP). */
const DISTILL_SUBGROUP_ROWS = 4;

/**
 * The distillation variants this device can run for rows of width C: 'subgroup' needs the WebGPU
 * feature 'subgroups' and C % 4 == 0 (it reads rows as vec4s); C omitted, every variant the
 * device runs for some width.
 */
export function distillVariants(gpu: Gpu, C?: number): DistillVariant[] {
  return C === undefined || C % 4 === 0 ? reductionVariants(gpu) : ['workgroup'];
}

/**
 * The variant when the caller names none: the per-adapter tuner's choice for the shape's class
 * (⌊log₂⌋ of R and of C; gpu/autotune-families.ts), else 'workgroup'.
 */
export function defaultDistillVariant(gpu: Gpu, R: number, C: number): DistillVariant {
  return chosenVariant(gpu, 'distill', `r${floorLog2(R)}.c${floorLog2(C)}`, { R, C }, 'workgroup', distillVariants(gpu, C));
}

/** A distillation row kernel (`entry`) of `variant`, and its workgroups for R rows of width C. */
function distillKernel(gpu: Gpu, entry: string, variant: DistillVariant, R: number, C: number, kind: DistillKind): [KernelSpec, [number, number?]] {
  const DIST_L2 = kind === 'l2' ? 1 : 0;
  if (variant === 'workgroup') return [{ shader: 'loss', entry, constants: { REDUCE_WG: rowWorkgroup(C), DIST_L2 } }, [Math.min(R, MAX_WORKGROUPS_PER_DIM)]];
  checkReductionVariant(gpu, variant, 'distillation loss');
  if (C % 4 !== 0) throw new GpuError(`The distillation loss variant 'subgroup' reads rows as vec4s and needs C % 4 == 0 (C = ${C}); use 'workgroup'.`, 'validation');
  const constants = { SG_WG: subgroupWorkgroupSize(gpu), ROWS_PER_WORKGROUP: DISTILL_SUBGROUP_ROWS, DIST_L2 };
  return [{ shader: 'loss_subgroups', entry, constants }, grid2d(ceilDiv(R, DISTILL_SUBGROUP_ROWS), 1)];
}

/**
 * DMAE's L_dist. teacher, student [R, C]: R = N·(1+V) tokens (cls included), C the teacher
 * width; student is the projected student feature W·S_k + b. Each row is L2-normalised as
 * F.normalize (x / max(‖x‖₂, 1e-12)); loss[0] = mean over R·C of |t̂ − ŝ| ('l1', the recipe's
 * choice) or (t̂ − ŝ)² ('l2', F.mse_loss). Assigned. α is applied by the caller.
 */
export function distillLossForward(
  rec: Recorder, loss: Tensor, teacher: Tensor, student: Tensor, R: number, C: number, kind: DistillKind = 'l1',
  variant: DistillVariant = defaultDistillVariant(rec.gpu, R, C),
): void {
  const [spec, workgroups] = distillKernel(rec.gpu, 'distill_row_loss', variant, R, C, kind);
  const rowLoss = scratch(rec.gpu.device, 'loss-distill-rows', R);
  rec.dispatch(spec, [rowLoss, teacher, student], [R, C, 0, { f32: 0 }], workgroups);
  sumReduce(rec, loss, rowLoss, R, 'sum', 1 / (R * C));
}

/**
 * dstudent[R, C] (assigned) = ∂(dloss · L_dist)/∂student, through the student's normalisation
 * only (the teacher is frozen). dloss = α · upstream gradient. L1 uses sign(ŝ − t̂) with
 * sign(0) = 0, as PyTorch. Rows with ‖s‖ ≤ 1e-12 get g/1e-12 (the clamped norm is constant there).
 */
export function distillLossBackward(
  rec: Recorder, dstudent: Tensor, teacher: Tensor, student: Tensor, R: number, C: number,
  kind: DistillKind = 'l1', dloss = 1, variant: DistillVariant = defaultDistillVariant(rec.gpu, R, C),
): void {
  const [spec, workgroups] = distillKernel(rec.gpu, 'distill_backward', variant, R, C, kind);
  rec.dispatch(spec, [dstudent, teacher, student], [R, C, 0, { f32: dloss / (R * C) }], workgroups);
}
