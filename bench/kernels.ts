/**
 * The kernel lab: every kernel on the shapes of one ViT-Tiny MAE training step, each verified
 * against the float64 reference (src/ref) before it is timed, and TensorFlow.js's WebGPU
 * backend timed on the same matmuls, on the same device, for the ratio.
 *
 * Adding a kernel is one declaration in DECLARATIONS below (see `KernelBench`): a name, the
 * shapes, the inputs, the outputs, a `gpu` call, the matching `ref` call, and its FLOPs or bytes.
 * Results: bench/results/kernels.json (fields described in bench/README.md).
 */
import type { Gpu } from '../src/gpu/device';
import { createTensor, readback } from '../src/gpu/buffers';
import { Recorder, type Tensor } from '../src/gpu/kernels';
import * as gpuAdamw from '../src/gpu/ops/adamw';
import * as gpuAttention from '../src/gpu/ops/attention';
import * as gpuElementwise from '../src/gpu/ops/elementwise';
import * as gpuLayernorm from '../src/gpu/ops/layernorm';
import * as gpuLoss from '../src/gpu/ops/loss';
import * as gpuMasking from '../src/gpu/ops/masking';
import * as gpuMatmul from '../src/gpu/ops/matmul';
import * as gpuPatch from '../src/gpu/ops/patch';
import * as refAdamw from '../src/ref/adamw';
import * as refAttention from '../src/ref/attention';
import * as refElementwise from '../src/ref/elementwise';
import * as refLayernorm from '../src/ref/layernorm';
import * as refLoss from '../src/ref/loss';
import * as refMasking from '../src/ref/masking';
import * as refMatmul from '../src/ref/matmul';
import * as refPatch from '../src/ref/patch';
import type { MatmulLayout, MatmulVariant } from '../src/gpu/ops/matmul';
import {
  TOL, combine, commonFields, compare, geomean, openBench, randn, round, timeInterleaved, ourContender, writeResults,
  type BenchContext, type Contender, type Timing, type Tolerance, type Verification,
} from './lib';
import { GEOMETRY, matmulTol, vitLinearShapes, type LinearShape } from './peer-core';
import { maeConfig } from '../src/engine/config';
import { createTfjsPeer, type TfjsPeer } from './tfjs-peer';

// ---------------------------------------------------------------------------------------------
// The shapes of one ViT-Tiny MAE step (32×32×3 images, p = 4, 25 % visible, batch 64)

export const STEP = {
  N: 64, // batch
  L: 64, // patches per image
  P: 48, // patch vector 4·4·3
  V: 16, // visible patches
  D: 192, // encoder width
  heads: 3,
  hd: 64,
  mlp: 768,
  depth: 12,
  Dd: 128, // decoder width
  headsD: 4,
  mlpD: 512,
  /** encoder tokens, cls included */
  T: 17,
  /** decoder tokens, cls included */
  Td: 65,
};
const R_ENC = STEP.N * STEP.T; // 1088
const R_DEC = STEP.N * STEP.Td; // 4160
const R_PATCH = STEP.N * STEP.L; // 4096

// ---------------------------------------------------------------------------------------------
// The declaration of one benchmarked kernel

export interface KernelInstance {
  /** Sizes by the letters of the kernel's header comment. */
  shape: Record<string, number | string>;
  /** Floating-point operations of one run (matmuls: 2·M·N·K) → GFLOP/s. */
  flops?: number;
  /** Bytes of the tensors one run must read + write, each counted once (memory-bound ops) → GB/s. */
  bytes?: number;
  /** Read-only f32 inputs (float32-representable values). */
  inputs: Record<string, Float64Array>;
  /** Read-only u32 inputs (indices). */
  ids?: Record<string, Uint32Array>;
  /** Outputs: a length (zero-filled) or the initial contents (for `+=` and in-place updates). */
  outputs: Record<string, number | Float64Array>;
  /** Records the kernel's dispatches; `inp` holds the tensors of both `inputs` and `ids`. */
  gpu(rec: Recorder, out: Record<string, Tensor>, inp: Record<string, Tensor>): void;
  /** The float64 reference on copies of the same data; fills / updates `out`. */
  ref(out: Record<string, Float64Array>, inp: Record<string, Float64Array>, ids: Record<string, Uint32Array>): void;
  /** Outputs compared and their tolerances; default: every output at `tol`. */
  check?: Record<string, Tolerance>;
  tol?: Tolerance;
}

export interface KernelBench {
  /** Unique, e.g. 'matmul_tiled_nt_enc_qkv'. */
  name: string;
  family: string;
  /** Extra labels written to the JSON (variant, layout, layer). */
  tags?: Record<string, string>;
  /** Declarations with the same group are timed interleaved and compared. */
  group?: string;
  /** The timed instance. */
  bench(): KernelInstance;
  /** A smaller instance of the same layout and kernel, verified instead where the float64 reference is too slow on the bench shapes. */
  verify?(): KernelInstance;
}

// ---------------------------------------------------------------------------------------------
// Matmul: both variants × the three layouts of every Linear layer of the step

/** Every Linear layer of the step (peer-core.ts's vitLinearShapes of ViT-Tiny at 32×32×3, p = 4, N = 64, V = 16). */
export const LINEARS: LinearShape[] = vitLinearShapes(maeConfig('vit-tiny', GEOMETRY), STEP.N, STEP.V);

export const MATMUL_VARIANTS: MatmulVariant[] = ['tiled', 'blocked', 'vec4', 'vec4_sampled'];

export interface MatmulCase {
  /** e.g. 'nt_enc_qkv' */
  id: string;
  layer: string;
  layout: MatmulLayout;
  /** What the product is in the layer. */
  role: 'forward y = x·Wᵀ' | 'backward dX = dY·W' | 'backward dW = dYᵀ·X';
  M: number;
  N: number;
  K: number;
  a: Float64Array;
  b: Float64Array;
  want: () => Float64Array;
}

/** Same inputs and one float64 product per case, shared by our variants and the peer. */
export function matmulCases(): MatmulCase[] {
  const cases: MatmulCase[] = [];
  let seed = 1000;
  for (const { layer, R, inF, outF, dx } of LINEARS) {
    const geo: Array<[MatmulLayout, MatmulCase['role'], number, number, number]> = [
      ['nt', 'forward y = x·Wᵀ', R, outF, inF],
      ...(dx === false ? [] : [['nn', 'backward dX = dY·W', R, inF, outF] as [MatmulLayout, MatmulCase['role'], number, number, number]]),
      ['tn', 'backward dW = dYᵀ·X', outF, inF, R],
    ];
    for (const [layout, role, M, N, K] of geo) {
      const a = randn(M * K, seed++);
      const b = randn(K * N, seed++);
      let memo: Float64Array | undefined;
      const want = (): Float64Array => {
        if (!memo) {
          memo = new Float64Array(M * N);
          refMatmul.matmul(memo, a, b, null, M, N, K, layout, false);
        }
        return memo;
      };
      cases.push({ id: `${layout}_${layer}`, layer, layout, role, M, N, K, a, b, want });
    }
  }
  return cases;
}


function matmulBench(c: MatmulCase, variant: MatmulVariant): KernelBench {
  const { M, N, K, layout } = c;
  return {
    name: `matmul_${variant}_${c.id}`,
    family: 'matmul',
    group: `matmul_${c.id}`,
    tags: { variant, layout, layer: c.layer, role: c.role },
    bench: () => ({
      shape: { M, N, K, layout },
      flops: 2 * M * N * K,
      // Plain product, "=" and no bias: the same work as tf.matMul (the bias/+= epilogue is O(M·N)).
      inputs: { a: c.a, b: c.b },
      outputs: { c: M * N },
      gpu: (rec, o, i) => gpuMatmul.matmul(rec, o.c, i.a, i.b, null, M, N, K, layout, false, variant),
      ref: (o) => o.c.set(c.want()),
      tol: matmulTol(K),
    }),
  };
}

// ---------------------------------------------------------------------------------------------
// Other kernel families: one declaration each (added as their modules land)

const F32 = 4; // bytes per element
const { N, L, P, V, D, Dd } = STEP;

/** float32-representable copy (inputs that the reference computes, e.g. saved statistics). */
const f32 = (x: Float64Array): Float64Array => x.map(Math.fround);
/** Sums of `count` float32 terms: atol grows as √count (as the tests do for parameter gradients). */
const sumTol = (tol: Tolerance, count: number): Tolerance => ({ atol: tol.atol * Math.sqrt(count), rtol: tol.rtol });
/** A mean-reduced loss's gradient is O(1/count): scale atol by the largest |reference| (loss.test.ts's rule). */
const scaledTol = (tol: Tolerance, want: Float64Array): Tolerance => ({ atol: tol.atol * want.reduce((m, x) => Math.max(m, Math.abs(x)), 0), rtol: tol.rtol });

/** MAE's masking of the step: V of L patches visible per image. */
const stepMasking = (): ReturnType<typeof gpuMasking.randomMasking> => gpuMasking.randomMasking(Float32Array.from(randn(N * L, 77).map((x) => (x + 1) / 2)), N, L, V);

function otherDeclarations(): KernelBench[] {
  const decls: KernelBench[] = [];
  const add = (family: string, name: string, bench: () => KernelInstance): void => {
    decls.push({ name, family, bench });
  };

  // Layer norm (eps 1e-6) at both widths: every block's norm1/norm2 and the final norms. Both
  // variants of the row kernels, timed interleaved per group ('subgroup' needs the 'subgroups'
  // feature: on a device without it, its declarations fail verification with the reason).
  for (const [where, rows, C] of [['enc', R_ENC, D], ['dec', R_DEC, Dd]] as const) for (const variant of ['workgroup', 'subgroup'] as const) {
    const suffix = variant === 'workgroup' ? where : `subgroup_${where}`;
    const addLn = (name: string, bench: () => KernelInstance): void => {
      decls.push({ name: `${name}_${suffix}`, family: 'layernorm', group: `${name}_${where}`, tags: { variant }, bench });
    };
    addLn('layernorm_forward', () => ({
      shape: { rows, C },
      bytes: F32 * (2 * rows * C + 2 * C + 2 * rows),
      inputs: { x: randn(rows * C, 1, 3), weight: randn(C, 2), bias: randn(C, 3) },
      outputs: { out: rows * C, mean: rows, rstd: rows },
      gpu: (rec, o, i) => gpuLayernorm.layernormForward(rec, o.out, o.mean, o.rstd, i.x, i.weight, i.bias, rows, C, 1e-6, variant),
      ref: (o, i) => refLayernorm.layernormForward(o.out, o.mean, o.rstd, i.x, i.weight, i.bias, rows, C),
      tol: TOL.reduction,
    }));
    addLn('layernorm_backward', () => {
      const x = randn(rows * C, 4, 3), weight = randn(C, 5);
      const y = new Float64Array(rows * C), mean = new Float64Array(rows), rstd = new Float64Array(rows);
      refLayernorm.layernormForward(y, mean, rstd, x, weight, new Float64Array(C), rows, C);
      return {
        shape: { rows, C },
        bytes: F32 * (3 * rows * C + 2 * rows + C + 4 * C),
        inputs: { dout: randn(rows * C, 6), x, weight, mean: f32(mean), rstd: f32(rstd) },
        outputs: { dx: rows * C, dweight: randn(C, 7), dbias: randn(C, 8) }, // parameter gradients accumulate
        gpu: (rec, o, i) => gpuLayernorm.layernormBackward(rec, o.dx, o.dweight, o.dbias, i.dout, i.x, i.weight, i.mean, i.rstd, rows, C, false, variant),
        ref: (o, i) => refLayernorm.layernormBackward(o.dx, o.dweight, o.dbias, i.dout, i.x, i.weight, i.mean, i.rstd, rows, C),
        check: { dx: TOL.gradient, dweight: sumTol(TOL.gradient, rows), dbias: sumTol(TOL.gradient, rows) },
      };
    });
  }

  // The Linear layers with a fused epilogue (matmul.wgsl's EPILOGUE), as the blocks record them,
  // every variant timed interleaved per layer; each verified against the float64 composite it
  // replaces: the plain product, then the element-wise reference (src/ref/elementwise).
  //   fc1 'gelu' (nt):               h = x·W1ᵀ + b1, a = gelu(h), gelu'(h) saved  vs matmul, biasGeluForward
  //   fc2 backward dX 'gelu_grad' (nn): dh = (dY·W2) ⊙ the saved gelu'(h)       vs matmul, geluBackward
  //   proj, fc2 'residual' (nt):     y = x·Wᵀ + b + x_res                    vs matmul + bias, addInPlace
  const linear = (layer: string): LinearShape => LINEARS.find((l) => l.layer === layer)!;
  const addFused = (
    layer: string, epilogue: gpuMatmul.MatmulEpilogue['kind'], layout: MatmulLayout, M: number, N: number, K: number,
    make: () => { inputs: Record<string, Float64Array>; outputs: Record<string, number>; want: Record<string, Float64Array> },
    gpu: (variant: MatmulVariant) => KernelInstance['gpu'],
  ): void => {
    let memo: ReturnType<typeof make> | undefined;
    const data = (): ReturnType<typeof make> => (memo ??= make()); // one float64 composite for every variant
    const id = `${layout}_${layer}_${epilogue}`;
    for (const variant of MATMUL_VARIANTS) {
      decls.push({ name: `matmul_${variant}_${id}`, family: 'matmul_epilogue', group: `matmul_${id}`, tags: { variant, layout, layer, epilogue }, bench: () => {
        const { inputs, outputs, want } = data();
        return {
          shape: { M, N, K, layout, epilogue },
          flops: 2 * M * N * K,
          inputs,
          outputs,
          gpu: gpu(variant),
          ref: (o) => Object.entries(want).forEach(([k, w]) => o[k].set(w)),
          tol: matmulTol(K),
        };
      } });
    }
  };
  let seed = 2000;
  /** The first of n fresh seeds, taken as the declarations are made (the data do not depend on --only). */
  const seeds = (n: number): number => {
    const first = seed;
    seed += n;
    return first;
  };
  for (const where of ['enc', 'dec'] as const) {
    const fc1 = linear(`${where}_fc1`), fc2 = linear(`${where}_fc2`);
    const [R, W, hidden] = [fc1.R, fc1.inF, fc1.outF];
    // fc1: weights scaled like a trained layer's, so that h spreads over GELU's bend and tails.
    const s1 = seeds(3);
    addFused(fc1.layer, 'gelu', 'nt', R, hidden, W, () => {
      const x = randn(R * W, s1), w = randn(hidden * W, s1 + 1, 0.2), bias = randn(hidden, s1 + 2, 0.5);
      const hPre = new Float64Array(R * hidden), grad = new Float64Array(R * hidden), a = new Float64Array(R * hidden);
      refMatmul.matmul(hPre, x, w, null, R, hidden, W, 'nt');
      for (let i = 0; i < grad.length; i++) grad[i] = refElementwise.geluGrad(hPre[i] + bias[i % hidden]);
      refElementwise.biasGeluForward(a, hPre, bias, R, hidden);
      return { inputs: { x, w, bias }, outputs: { a: R * hidden, grad: R * hidden }, want: { a, grad } };
    }, (variant) => (rec, o, i) => gpuMatmul.matmul(rec, o.a, i.x, i.w, i.bias, R, hidden, W, 'nt', false, variant, { kind: 'gelu', grad: o.grad }));
    // fc2's backward dX, through GELU: dh = (dY·W2) ⊙ gelu'(h), gelu'(h) saved by fc1's forward.
    const s2 = seeds(3);
    addFused(fc2.layer, 'gelu_grad', 'nn', R, hidden, W, () => {
      const dy = randn(R * W, s2), w = randn(W * hidden, s2 + 1), h = randn(R * hidden, s2 + 2, 4);
      const da = new Float64Array(R * hidden), dh = new Float64Array(R * hidden);
      refMatmul.matmul(da, dy, w, null, R, hidden, W, 'nn');
      refElementwise.geluBackward(dh, da, h, R * hidden);
      return { inputs: { dy, w, grad: h.map(refElementwise.geluGrad) }, outputs: { dh: R * hidden }, want: { dh } };
    }, (variant) => (rec, o, i) => gpuMatmul.matmul(rec, o.dh, i.dy, i.w, null, R, hidden, W, 'nn', false, variant, { kind: 'gelu_grad', grad: i.grad }));
    // proj and fc2: the block's residual x + f(x) added as the product is stored.
    for (const { layer, R: rows, inF, outF } of [linear(`${where}_proj`), fc2]) {
      const s0 = seeds(4);
      addFused(layer, 'residual', 'nt', rows, outF, inF, () => {
        const x = randn(rows * inF, s0), w = randn(outF * inF, s0 + 1), bias = randn(outF, s0 + 2), res = randn(rows * outF, s0 + 3);
        const y = new Float64Array(rows * outF);
        refMatmul.matmul(y, x, w, bias, rows, outF, inF, 'nt');
        refElementwise.addInPlace(y, res, rows * outF);
        return { inputs: { x, w, bias, res }, outputs: { y: rows * outF }, want: { y } };
      }, (variant) => (rec, o, i) => gpuMatmul.matmul(rec, o.y, i.x, i.w, i.bias, rows, outF, inF, 'nt', false, variant, { kind: 'residual', residual: i.res }));
    }
  }
  add('residual', 'residual_add_enc', () => {
    const n = R_ENC * D;
    return {
      shape: { n },
      bytes: F32 * 3 * n,
      inputs: { a: randn(n, 14), b: randn(n, 15) },
      outputs: { out: n },
      gpu: (rec, o, i) => gpuElementwise.add(rec, o.out, i.a, i.b, n),
      ref: (o, i) => refElementwise.add(o.out, i.a, i.b, n),
      tol: TOL.elementwise,
    };
  });

  // Attention core (between the qkv and proj Linears): encoder T = 1+V, decoder T = 1+L. Both
  // variants, timed interleaved per group ('subgroup' needs the 'subgroups' feature: on a device
  // without it, its declarations fail verification with the reason).
  for (const [where, T, H, hd] of [['enc', STEP.T, STEP.heads, STEP.hd], ['dec', STEP.Td, STEP.headsD, Dd / STEP.headsD]] as const) for (const variant of ['workgroup', 'subgroup'] as const) {
    const B = N, W = H * hd;
    const qkvLen = B * T * 3 * W, outLen = B * T * W, probsLen = B * H * T * T;
    const suffix = variant === 'workgroup' ? where : `subgroup_${where}`;
    const addAtt = (name: string, bench: () => KernelInstance): void => {
      decls.push({ name: `${name}_${suffix}`, family: 'attention', group: `${name}_${where}`, tags: { variant }, bench });
    };
    addAtt('attention_forward', () => ({
      shape: { B, T, H, hd },
      flops: 4 * B * H * T * T * hd, // q·kᵀ and probs·v
      bytes: F32 * (qkvLen + outLen + probsLen),
      inputs: { qkv: randn(qkvLen, 21) },
      outputs: { out: outLen, probs: probsLen },
      gpu: (rec, o, i) => gpuAttention.attentionForward(rec, o.out, o.probs, i.qkv, B, T, H, hd, variant),
      ref: (o, i) => refAttention.attentionForward(o.out, o.probs, i.qkv, B, T, H, hd),
      tol: TOL.reduction,
    }));
    addAtt('attention_backward', () => {
      const qkv = randn(qkvLen, 22);
      const probs = new Float64Array(probsLen);
      refAttention.attentionForward(new Float64Array(outLen), probs, qkv, B, T, H, hd);
      return {
        shape: { B, T, H, hd },
        flops: 8 * B * H * T * T * hd, // dout·vᵀ, probsᵀ·dout, dS·k, dSᵀ·q
        bytes: F32 * (outLen + 2 * qkvLen + probsLen),
        inputs: { dout: randn(outLen, 23), qkv, probs: f32(probs) },
        outputs: { dqkv: qkvLen },
        gpu: (rec, o, i) => gpuAttention.attentionBackward(rec, o.dqkv, i.dout, i.qkv, i.probs, B, T, H, hd, variant),
        ref: (o, i) => refAttention.attentionBackward(o.dqkv, i.dout, i.qkv, i.probs, B, T, H, hd),
        tol: TOL.gradient,
      };
    });
  }

  // Patches of the 32×32×3 images (p = 4), and MAE's masking of them.
  const [C, Hh, Ww, p] = [3, 32, 32, 4];
  const imgLen = N * C * Hh * Ww;
  add('patch', 'patchify_conv', () => ({
    shape: { N, C, H: Hh, W: Ww, p },
    bytes: F32 * 2 * imgLen,
    inputs: { img: randn(imgLen, 31) },
    outputs: { patches: imgLen },
    gpu: (rec, o, i) => gpuPatch.patchifyConv(rec, o.patches, i.img, N, C, Hh, Ww, p),
    ref: (o, i) => refPatch.patchifyConv(o.patches, i.img, N, C, Hh, Ww, p),
    tol: TOL.exact,
  }));
  add('patch', 'patchify_target', () => ({
    shape: { N, C, H: Hh, W: Ww, p },
    bytes: F32 * 2 * imgLen,
    inputs: { img: randn(imgLen, 32) },
    outputs: { target: imgLen },
    gpu: (rec, o, i) => gpuPatch.patchifyTarget(rec, o.target, i.img, N, C, Hh, Ww, p),
    ref: (o, i) => refPatch.patchifyTarget(o.target, i.img, N, C, Hh, Ww, p),
    tol: TOL.exact,
  }));
  // The MAE step's target with norm_pix: patchify and standardise per patch in one pass.
  add('patch', 'patchify_target_norm', () => ({
    shape: { N, C, H: Hh, W: Ww, p },
    bytes: F32 * 2 * imgLen,
    inputs: { img: randn(imgLen, 32, 2) },
    outputs: { target: imgLen },
    gpu: (rec, o, i) => gpuPatch.patchifyTarget(rec, o.target, i.img, N, C, Hh, Ww, p, true),
    ref: (o, i) => refPatch.patchifyTarget(o.target, i.img, N, C, Hh, Ww, p, true),
    tol: TOL.reduction,
  }));
  add('masking', 'gather_visible', () => ({
    shape: { N, L, V, D },
    bytes: F32 * (2 * N * (1 + V) * D) + 4 * N * V,
    inputs: { x: randn(N * L * D, 33), cls: randn(D, 34) },
    ids: { idsKeep: stepMasking().idsKeep },
    outputs: { out: N * (1 + V) * D },
    gpu: (rec, o, i) => gpuMasking.gatherVisible(rec, o.out, i.x, i.cls, i.idsKeep, N, L, V, D),
    ref: (o, i, ids) => refMasking.gatherVisible(o.out, i.x, i.cls, ids.idsKeep, N, L, V, D),
    tol: TOL.exact,
  }));
  add('masking', 'gather_visible_backward', () => ({
    shape: { N, L, V, D },
    bytes: F32 * (N * L * D + N * (1 + V) * D + 2 * D) + 4 * N * V,
    inputs: { dout: randn(N * (1 + V) * D, 35) },
    ids: { idsKeep: stepMasking().idsKeep },
    outputs: { dx: N * L * D, dcls: randn(D, 36) }, // dcls accumulates
    gpu: (rec, o, i) => gpuMasking.gatherVisibleBackward(rec, o.dx, o.dcls, i.dout, i.idsKeep, N, L, V, D),
    ref: (o, i, ids) => refMasking.gatherVisibleBackward(o.dx, o.dcls, i.dout, ids.idsKeep, N, L, V, D),
    check: { dx: TOL.exact, dcls: sumTol(TOL.reduction, N) },
  }));
  add('masking', 'insert_mask_tokens', () => ({
    shape: { N, L, V, D: Dd },
    bytes: F32 * (N * (1 + L) * Dd + N * (1 + V) * Dd + Dd) + 4 * N * L,
    inputs: { x: randn(N * (1 + V) * Dd, 37), maskToken: randn(Dd, 38) },
    ids: { idsRestore: stepMasking().idsRestore },
    outputs: { out: N * (1 + L) * Dd },
    gpu: (rec, o, i) => gpuMasking.insertMaskTokens(rec, o.out, i.x, i.maskToken, i.idsRestore, N, L, V, Dd),
    ref: (o, i, ids) => refMasking.insertMaskTokens(o.out, i.x, i.maskToken, ids.idsRestore, N, L, V, Dd),
    tol: TOL.exact,
  }));
  add('masking', 'insert_mask_tokens_backward', () => ({
    shape: { N, L, V, D: Dd },
    bytes: F32 * (N * (1 + L) * Dd + N * (1 + V) * Dd + 2 * Dd) + 4 * N * L,
    inputs: { dout: randn(N * (1 + L) * Dd, 39) },
    ids: { idsRestore: stepMasking().idsRestore },
    outputs: { dx: N * (1 + V) * Dd, dmaskToken: randn(Dd, 40) }, // dmaskToken accumulates
    gpu: (rec, o, i) => gpuMasking.insertMaskTokensBackward(rec, o.dx, o.dmaskToken, i.dout, i.idsRestore, N, L, V, Dd),
    ref: (o, i, ids) => refMasking.insertMaskTokensBackward(o.dx, o.dmaskToken, i.dout, ids.idsRestore, N, L, V, Dd),
    check: { dx: TOL.exact, dmaskToken: sumTol(TOL.reduction, N * (L - V)) },
  }));

  // MAE loss: masked MSE forward and backward (its norm_pix target is patchify_target_norm, above).
  const rows = N * L;
  const mask = (): Float64Array => Float64Array.from(stepMasking().mask);
  add('loss', 'mae_loss_forward', () => ({
    shape: { N, L, P },
    bytes: F32 * (2 * rows * P + 2 * rows + 1),
    inputs: { pred: randn(rows * P, 42), target: randn(rows * P, 43), mask: mask() },
    outputs: { loss: 2, lossPerPatch: rows }, // (loss, Σmask)
    gpu: (rec, o, i) => gpuLoss.maeLossForward(rec, o.loss, o.lossPerPatch, i.pred, i.target, i.mask, N, L, P),
    ref: (o, i) => refLoss.maeLossForward(o.loss, o.lossPerPatch, i.pred, i.target, i.mask, N, L, P),
    tol: TOL.reduction,
  }));
  add('loss', 'mae_loss_backward', () => {
    const pred = randn(rows * P, 44), target = randn(rows * P, 45), m = mask();
    const loss = Float64Array.of(0, m.reduce((a, b) => a + b, 0)); // the forward's (loss, Σmask): the backward reads Σmask
    const want = new Float64Array(rows * P);
    refLoss.maeLossBackward(want, pred, target, m, loss, N, L, P);
    return {
      shape: { N, L, P },
      bytes: F32 * (3 * rows * P + rows + 1),
      inputs: { pred, target, mask: m, loss },
      outputs: { dpred: rows * P },
      gpu: (rec, o, i) => gpuLoss.maeLossBackward(rec, o.dpred, i.pred, i.target, i.mask, i.loss, N, L, P),
      ref: (o) => o.dpred.set(want),
      tol: scaledTol(TOL.gradient, want),
    };
  });

  // DMAE's L1 distillation loss on the encoder's tokens (R = N·(1 + V) rows of a ViT-Small
  // teacher's width, 384), forward (the row losses and their mean) and backward; both variants of
  // the row kernels, interleaved per group ('subgroup' needs the 'subgroups' feature).
  const Dt = 384;
  for (const variant of ['workgroup', 'subgroup'] as const) {
    const suffix = variant === 'workgroup' ? '' : '_subgroup';
    const addDistill = (name: string, bench: () => KernelInstance): void => {
      decls.push({ name: `${name}${suffix}`, family: 'loss', group: name, tags: { variant }, bench });
    };
    addDistill('distill_loss_forward', () => ({
      shape: { R: R_ENC, C: Dt },
      bytes: F32 * (2 * R_ENC * Dt + 1),
      inputs: { teacher: randn(R_ENC * Dt, 46, 3), student: randn(R_ENC * Dt, 47) },
      outputs: { loss: 1 },
      gpu: (rec, o, i) => gpuLoss.distillLossForward(rec, o.loss, i.teacher, i.student, R_ENC, Dt, 'l1', variant),
      ref: (o, i) => refLoss.distillLossForward(o.loss, i.teacher, i.student, R_ENC, Dt, 'l1'),
      tol: TOL.reduction,
    }));
    addDistill('distill_loss_backward', () => {
      const teacher = randn(R_ENC * Dt, 48, 3), student = randn(R_ENC * Dt, 49);
      const want = new Float64Array(R_ENC * Dt);
      refLoss.distillLossBackward(want, teacher, student, R_ENC, Dt, 'l1', 1);
      return {
        shape: { R: R_ENC, C: Dt },
        bytes: F32 * 3 * R_ENC * Dt,
        inputs: { teacher, student },
        outputs: { dstudent: R_ENC * Dt },
        gpu: (rec, o, i) => gpuLoss.distillLossBackward(rec, o.dstudent, i.teacher, i.student, R_ENC, Dt, 'l1', 1, variant),
        ref: (o) => o.dstudent.set(want),
        tol: scaledTol(TOL.gradient, want),
      };
    });
  }

  // AdamW over the parameter arena (5.5 M elements), and the global gradient norm before it.
  const n = 5_500_000;
  // Both AdamW variants (bit-identical results) and both first passes of the norm, interleaved.
  for (const variant of ['vec4', 'scalar'] as const) {
    decls.push({ family: 'adamw', name: variant === 'vec4' ? 'adamw_step' : 'adamw_step_scalar', group: 'adamw_step', tags: { variant }, bench: () => ({
      shape: { n },
      bytes: F32 * 7 * n, // reads params, grads, m, v; writes params, m, v
      inputs: { grads: randn(n, 51, 0.01), clipCoef: Float64Array.of(Math.fround(0.8)) },
      ids: { ranges: Uint32Array.of(0, 4_000_000, 4_100_000, 5_400_000) }, // decay on matrices only: a few ranges
      outputs: { params: randn(n, 52), m: randn(n, 53, 1e-3), v: f32(randn(n, 54, 1e-3).map((x) => x * x)) },
      gpu: (rec, o, i) => gpuAdamw.adamwStep(rec, o.params, i.grads, o.m, o.v, i.ranges, i.clipCoef, n, ADAMW_OPTS, null, variant),
      ref: (o, i, ids) => refAdamw.adamwStep(o.params, i.grads, o.m, o.v, ids.ranges, i.clipCoef, n, ADAMW_OPTS),
      tol: TOL.elementwise,
    }) });
  }
  for (const variant of ['vec4', 'scalar'] as const) {
    decls.push({ family: 'adamw', name: variant === 'vec4' ? 'global_grad_norm' : 'global_grad_norm_scalar', group: 'global_grad_norm', tags: { variant }, bench: () => ({
      shape: { n },
      bytes: F32 * (n + 1),
      inputs: { grads: randn(n, 55, 0.01) },
      outputs: { out: 1 },
      gpu: (rec, o, i) => gpuAdamw.globalGradNorm(rec, o.out, i.grads, n, variant),
      ref: (o, i) => refAdamw.globalGradNorm(o.out, i.grads, n),
      tol: TOL.reduction,
    }) });
  }
  return decls;
}

const ADAMW_OPTS = { lr: 1.5e-4 * 64 / 256, step: 10, weightDecay: 0.05 };

// ---------------------------------------------------------------------------------------------
// Running

interface Prepared {
  inst: KernelInstance;
  inputs: Record<string, Tensor>;
  outputs: Record<string, Tensor>;
  tensors: Tensor[];
}

function upload(gpu: Gpu, inst: KernelInstance, label: string): Prepared {
  const tensors: Tensor[] = [];
  const make = (name: string, d: number | Float64Array | Uint32Array): Tensor => {
    const t =
      typeof d === 'number'
        ? createTensor(gpu.device, d, `${label}.${name}`)
        : createTensor(gpu.device, d.length, `${label}.${name}`, d instanceof Uint32Array ? d : Float32Array.from(d));
    tensors.push(t);
    return t;
  };
  const inputs = Object.fromEntries([...Object.entries(inst.inputs), ...Object.entries(inst.ids ?? {})].map(([k, d]) => [k, make(k, d)]));
  const outputs = Object.fromEntries(Object.entries(inst.outputs).map(([k, d]) => [k, make(k, d)]));
  return { inst, inputs, outputs, tensors };
}

const release = (p: Prepared): void => p.tensors.forEach((t) => t.buffer.destroy());

/** Runs the kernel once on fresh data and compares every checked output with the reference. */
async function verifyInstance(gpu: Gpu, p: Prepared): Promise<Verification> {
  const { inst } = p;
  try {
    gpu.device.pushErrorScope('validation');
    const rec = new Recorder(gpu, undefined, 'verify');
    inst.gpu(rec, p.outputs, p.inputs);
    await rec.submit();
    const err = await gpu.device.popErrorScope();
    if (err) throw new Error(`validation error: ${err.message}`);
    const want: Record<string, Float64Array> = Object.fromEntries(
      Object.entries(inst.outputs).map(([k, d]) => [k, typeof d === 'number' ? new Float64Array(d) : Float64Array.from(d)]),
    );
    inst.ref(want, inst.inputs, inst.ids ?? {});
    const checks = inst.check ?? Object.fromEntries(Object.keys(inst.outputs).map((k) => [k, inst.tol ?? TOL.reduction]));
    const results: Verification[] = [];
    for (const [k, tol] of Object.entries(checks)) results.push(compare(await readback(gpu.device, p.outputs[k]), want[k], tol, k));
    return combine(results);
  } catch (e) {
    return { verified: false, maxAbsError: Infinity, worstToleranceUse: Infinity, tolerance: inst.tol ?? TOL.reduction, failure: (e as Error).message };
  }
}

export interface KernelResult {
  name: string;
  family: string;
  impl: 'ours' | 'tfjs-webgpu';
  tags?: Record<string, string>;
  shape: Record<string, number | string>;
  flops?: number;
  bytes?: number;
  verified: boolean;
  maxAbsError: number | null;
  worstToleranceUse: number | null;
  tolerance: Tolerance;
  verifiedAt?: Record<string, number | string>;
  failure?: string;
  medianMs?: number;
  minMs?: number;
  gflops?: number;
  gbps?: number;
  wallMedianMs?: number;
  wallGflops?: number;
  wallGbps?: number;
  samplesMs?: number[];
  wallSamplesMs?: number[];
}

function rates(r: KernelResult, t: Timing): void {
  Object.assign(r, { medianMs: t.medianMs, minMs: t.minMs, wallMedianMs: t.wallMedianMs });
  if (r.flops) {
    r.gflops = round(r.flops / (t.medianMs * 1e6));
    r.wallGflops = round(r.flops / (t.wallMedianMs * 1e6));
  }
  if (r.bytes) {
    r.gbps = round(r.bytes / (t.medianMs * 1e6));
    r.wallGbps = round(r.bytes / (t.wallMedianMs * 1e6));
  }
  r.samplesMs = t.samplesMs;
  r.wallSamplesMs = t.wallSamplesMs;
}

const finite = (x: number): number | null => (Number.isFinite(x) ? Number(x.toPrecision(3)) : null);

function resultOf(base: Omit<KernelResult, 'verified' | 'maxAbsError' | 'worstToleranceUse' | 'tolerance'>, v: Verification): KernelResult {
  const r: KernelResult = { ...base, verified: v.verified, maxAbsError: finite(v.maxAbsError), worstToleranceUse: finite(v.worstToleranceUse), tolerance: v.tolerance };
  if (v.verifiedAt) r.verifiedAt = v.verifiedAt;
  if (v.failure) r.failure = v.failure;
  return r;
}

export interface PeerCase {
  result: KernelResult;
  contender?: Contender;
  dispose(): void;
}

/** Verifies each declaration (and peer), then times the verified ones interleaved. */
async function runGroup(ctx: BenchContext, decls: KernelBench[], peers: PeerCase[], log: (s: string) => void): Promise<KernelResult[]> {
  const out: KernelResult[] = [];
  const contenders: Contender[] = [];
  const prepared: Prepared[] = [];
  for (const d of decls) {
    const inst = d.bench();
    const base = { name: d.name, family: d.family, impl: 'ours' as const, tags: d.tags, shape: inst.shape, flops: inst.flops, bytes: inst.bytes };
    let v: Verification;
    let p: Prepared;
    if (d.verify) {
      const small = d.verify();
      const ps = upload(ctx.gpu, small, d.name);
      v = { ...(await verifyInstance(ctx.gpu, ps)), verifiedAt: small.shape };
      release(ps);
      p = upload(ctx.gpu, inst, d.name);
    } else {
      p = upload(ctx.gpu, inst, d.name);
      v = await verifyInstance(ctx.gpu, p);
    }
    prepared.push(p);
    const r = resultOf(base, v);
    out.push(r);
    if (v.verified) contenders.push(ourContender(ctx, d.name, (rec) => inst.gpu(rec, p.outputs, p.inputs)));
    else log(`  FAILED verification: ${d.name}: ${v.failure}`);
  }
  for (const pc of peers) {
    out.push(pc.result);
    if (pc.contender) contenders.push(pc.contender);
    else log(`  FAILED verification: ${pc.result.name}: ${pc.result.failure}`);
  }
  const timings = contenders.length ? await timeInterleaved(ctx, contenders) : new Map<string, Timing>();
  for (const r of out) {
    const t = timings.get(r.name);
    if (t) rates(r, t);
  }
  prepared.forEach(release);
  peers.forEach((pc) => pc.dispose());
  for (const r of out) {
    const speed = r.gflops !== undefined ? `${r.gflops} GFLOP/s` : r.gbps !== undefined ? `${r.gbps} GB/s` : '';
    log(`  ${r.name.padEnd(44)} ${r.verified ? (r.medianMs ?? NaN).toFixed(3).padStart(9) + ' ms  ' + speed : 'FAILED'}`);
  }
  return out;
}

async function tfjsCase(peer: TfjsPeer, c: MatmulCase): Promise<PeerCase> {
  const name = `matmul_tfjs_webgpu_${c.id}`;
  const m = peer.matmul(name, c.a, c.b, c.M, c.N, c.K, c.layout);
  let v: Verification;
  let programs = '';
  try {
    v = compare(await m.result(), c.want(), matmulTol(c.K), 'c');
    programs = (await m.programs()).join(' + ');
  } catch (e) {
    v = { verified: false, maxAbsError: Infinity, worstToleranceUse: Infinity, tolerance: matmulTol(c.K), failure: (e as Error).message };
  }
  const result = resultOf(
    { name, family: 'matmul', impl: 'tfjs-webgpu', tags: { variant: 'tfjs-webgpu', layout: c.layout, layer: c.layer, role: c.role, programs }, shape: { M: c.M, N: c.N, K: c.K, layout: c.layout }, flops: 2 * c.M * c.N * c.K },
    v,
  );
  return { result, contender: v.verified ? m.contender : undefined, dispose: () => m.dispose() };
}

// ---------------------------------------------------------------------------------------------
// Ratios

/** speed(ours) / speed(theirs) = theirs_ms / ours_ms; above 1 means the first is faster. */
const speedRatio = (ours?: KernelResult, theirs?: KernelResult, wall = false): number | undefined => {
  const a = wall ? ours?.wallMedianMs : ours?.medianMs;
  const b = wall ? theirs?.wallMedianMs : theirs?.medianMs;
  return a && b && ours!.verified && theirs!.verified ? b / a : undefined;
};

function matmulRatios(cases: MatmulCase[], results: KernelResult[]): { ratios: Record<string, number>; summary: Record<string, unknown> } {
  const by = (n: string): KernelResult | undefined => results.find((r) => r.name === n);
  const ours = (v: MatmulVariant, c: MatmulCase): KernelResult | undefined => by(`matmul_${v}_${c.id}`);
  const peer = (c: MatmulCase): KernelResult | undefined => by(`matmul_tfjs_webgpu_${c.id}`);
  const ratios: Record<string, number> = {};
  const put = (k: string, x: number | undefined): void => {
    if (x !== undefined) ratios[k] = round(x);
  };
  /** Geometric mean over cases, or undefined when any case lacks a figure (failed or not run). */
  const geo = (xs: Array<number | undefined>): number | undefined =>
    xs.length > 0 && xs.every((x) => x !== undefined) ? geomean(xs as number[]) : undefined;

  // The variant the engine should default to on this adapter: the fastest over all shapes
  // (geometric mean of its speed relative to 'tiled'); the comparisons with tfjs use it.
  const rel = MATMUL_VARIANTS.map((v) => [v, geo(cases.map((c) => speedRatio(ours(v, c), ours('tiled', c))))] as const);
  const fastest = rel.filter(([, x]) => x !== undefined).sort((a, b) => b[1]! - a[1]!)[0]?.[0] ?? 'tiled';

  put('matmul_vs_tfjs_webgpu', geo(cases.map((c) => speedRatio(ours(fastest, c), peer(c)))));
  put('matmul_vs_tfjs_webgpu_wallclock', geo(cases.map((c) => speedRatio(ours(fastest, c), peer(c), true))));
  for (const layout of ['nt', 'nn', 'tn'] as const) {
    put(`matmul_${layout}_vs_tfjs_webgpu`, geo(cases.filter((c) => c.layout === layout).map((c) => speedRatio(ours(fastest, c), peer(c)))));
  }
  for (const v of MATMUL_VARIANTS) put(`matmul_${v}_vs_tfjs_webgpu`, geo(cases.map((c) => speedRatio(ours(v, c), peer(c)))));
  for (const c of cases) put(`matmul_${c.id}_vs_tfjs_webgpu`, speedRatio(ours(fastest, c), peer(c)));
  // Variant against variant: every pair over all shapes, and tiled vs blocked per shape.
  MATMUL_VARIANTS.forEach((x, i) =>
    MATMUL_VARIANTS.slice(i + 1).forEach((y) => put(`matmul_${x}_vs_${y}`, geo(cases.map((c) => speedRatio(ours(x, c), ours(y, c)))))),
  );
  put('matmul_tiled_vs_blocked_wallclock', geo(cases.map((c) => speedRatio(ours('tiled', c), ours('blocked', c), true))));
  for (const c of cases) put(`matmul_${c.id}_tiled_vs_blocked`, speedRatio(ours('tiled', c), ours('blocked', c)));
  return {
    ratios,
    summary: {
      matmulFastestVariant: fastest,
      matmulVariantSpeedVsTiled: Object.fromEntries(rel.map(([v, x]) => [v, x === undefined ? null : round(x)])),
      matmulFastestVariantNote: `'${fastest}' is the fastest variant on this adapter over the ${cases.length} matmul shapes (geometric mean of speed relative to 'tiled'); every matmul_*_vs_tfjs_webgpu ratio without a variant name uses it`,
    },
  };
}

// ---------------------------------------------------------------------------------------------
// The command

export interface KernelsOptions {
  warmup: number;
  reps: number;
  /** Only run benchmarks whose name contains one of these comma-separated substrings. */
  only?: string;
  peer: boolean;
  out: string;
}

export async function runKernels(opts: KernelsOptions): Promise<void> {
  const started = new Date();
  const t0 = performance.now();
  const log = (s: string): void => console.log(s);
  const ctx = await openBench(opts);
  log(`adapter: ${ctx.gpu.adapter.description}; timing: ${ctx.method}, ${opts.warmup} warm-up + ${opts.reps} reps, median`);

  let peer: TfjsPeer | undefined;
  let peerError: string | undefined;
  if (opts.peer) {
    try {
      peer = await createTfjsPeer(ctx);
    } catch (e) {
      peerError = (e as Error).message;
      log(`tfjs peer unavailable: ${peerError}`);
    }
  }

  const results: KernelResult[] = [];
  const only = opts.only?.split(',').filter(Boolean) ?? [];
  const keep = (name: string): boolean => only.length === 0 || only.some((o) => name.includes(o));

  // Matmul: per case, our two variants and the peer, interleaved.
  const cases = matmulCases().filter((c) => keep(`matmul_${c.id}`) || MATMUL_VARIANTS.some((v) => keep(`matmul_${v}_${c.id}`)));
  for (const c of cases) {
    log(`matmul ${c.id} (${c.role}) M=${c.M} N=${c.N} K=${c.K}`);
    const decls = MATMUL_VARIANTS.map((v) => matmulBench(c, v));
    const peers = peer ? [await tfjsCase(peer, c)] : [];
    results.push(...(await runGroup(ctx, decls, peers, log)));
  }

  // Every other family: one group per declaration, or per `group` when variants are declared.
  const others = otherDeclarations().filter((d) => keep(d.name));
  const groups = new Map<string, KernelBench[]>();
  for (const d of others) groups.set(d.group ?? d.name, [...(groups.get(d.group ?? d.name) ?? []), d]);
  for (const [g, decls] of groups) {
    if (decls.length > 1) log(g);
    results.push(...(await runGroup(ctx, decls, [], log)));
  }

  const { ratios, summary } = cases.length ? matmulRatios(cases, results) : { ratios: {}, summary: { matmulFastestVariant: null } };
  const failed = results.filter((r) => !r.verified).map((r) => r.name);
  const reduced = results.filter((r) => r.verifiedAt).map((r) => r.name);
  const body = {
    ...(await commonFields(ctx, started)),
    peer: peer ? { name: peer.name, version: peer.version, backend: peer.backendName, timedAs: peer.timedAs } : { unavailable: peerError ?? 'disabled (--no-peer)' },
    step: { ...STEP, rows: { encoder: R_ENC, decoder: R_DEC, patches: R_PATCH } },
    summary: {
      ...summary,
      kernels: results.length,
      families: [...new Set(results.map((r) => r.family))],
      failed,
      verification:
        reduced.length === 0
          ? 'every kernel (and the peer) was verified against the float64 reference on the same shapes it was timed on'
          : `verified on the timed shapes, except at a reduced size (see verifiedAt): ${reduced.join(', ')}`,
      seconds: round((performance.now() - t0) / 1000, 3),
    },
    ratios,
    kernels: results,
  };
  const path = writeResults(opts.out, body);
  log(`\nratios (above 1: the first named is faster; per-shape ratios are in the JSON):`);
  for (const [k, v] of Object.entries(ratios)) if (!/^matmul_(nt|nn|tn)_\w+_vs_/.test(k)) log(`  ${k.padEnd(40)} ${v}`);
  if (cases.length) log(`fastest matmul variant here: ${summary.matmulFastestVariant}`);
  log(`${results.length} kernels, ${failed.length} failed verification${failed.length ? `: ${failed.join(', ')}` : ''}; ${round((performance.now() - t0) / 1000, 3)} s`);
  log(`wrote ${path}`);
  const errors = ctx.gpu.takeUncapturedErrors();
  if (errors.length) log(`uncaptured GPU errors: ${errors.join('; ')}`);
  ctx.timer?.destroy();
  ctx.gpu.destroy();
  if (failed.length) process.exitCode = 1;
}
