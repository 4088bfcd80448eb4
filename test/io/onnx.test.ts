import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-web';
import { beforeAll, describe, expect, it } from 'vitest';
import { randomMasking } from '../../src/core/masking';
import { maeConfig, numPatches, patchDim, type MaeConfig } from '../../src/engine/config';
import { initParams, type ParamMap } from '../../src/engine/init';
import { maeParamLayout } from '../../src/engine/params';
import { ModelProto } from '../../src/io/onnx-proto';
import { encoderOnnx, maeOnnx } from '../../src/io/onnx';
import { forwardDecoder, forwardEncoder } from '../../src/ref/model';
import { randn } from '../helpers';

/**
 * float32 in onnxruntime vs the float64 reference: a few blocks of float32 rounding on O(1)
 * values; 2e-4 absolute + relative leaves a wide margin over what we see (~1e-6) while a wrong
 * weight layout, head split or masking gives O(1) errors.
 */
const TOL = 2e-4;

function perturbed(c: MaeConfig, seed: number): ParamMap {
  const p = initParams(maeParamLayout(c), c.imgSize / c.patchSize, seed);
  let s = seed;
  for (const [n, t] of p) {
    if (n.includes('pos_embed')) continue;
    const r = randn(t.length, ++s, 0.2);
    for (let i = 0; i < t.length; i++) t[i] = Math.fround(t[i] + r[i]);
  }
  return p;
}

function expectNear(got: ArrayLike<number>, want: ArrayLike<number>, what: string): number {
  expect(got.length, what).toBe(want.length);
  let worst = 0;
  for (let i = 0; i < want.length; i++) {
    const e = Math.abs(got[i] - want[i]) / (1 + Math.abs(want[i]));
    if (!(e <= worst)) worst = Number.isNaN(e) ? Infinity : e;
  }
  expect(worst, `${what}: worst |onnx − ref| / (1 + |ref|) = ${worst}`).toBeLessThan(TOL);
  return worst;
}

const session = (bytes: Uint8Array) => ort.InferenceSession.create(bytes, { executionProviders: ['wasm'] });

beforeAll(() => {
  ort.env.wasm.numThreads = 1;
});

describe('ONNX export in onnxruntime-web (wasm) vs the float64 reference', () => {
  // Odd geometry: 1 channel, 3 heads of 16, decoder 2 blocks of 4 heads.
  const cases: [string, MaeConfig][] = [
    ['RGB 16×16 patch 4, width 32, 2 heads', maeConfig('test', { imgSize: 16, patchSize: 4, inChans: 3 })],
    ['gray 12×12 patch 3, width 48, 3 heads, decoder 2×4 heads', maeConfig('test', { imgSize: 12, patchSize: 3, inChans: 1 }, { embedDim: 48, numHeads: 3, depth: 3, decoderEmbedDim: 32, decoderDepth: 2, decoderNumHeads: 4, normPixLoss: false })],
  ];

  it('encoder at ViT-Tiny size (192 wide, 12 blocks, 3 heads, 64 patches of 4×4×3)', async () => {
    const c = maeConfig('vit-tiny', { imgSize: 32, patchSize: 4, inChans: 3 });
    const params = perturbed(c, 6);
    const imgs = randn(3 * 32 * 32, 13);
    const s = await session(encoderOnnx(c, params));
    const out = await s.run({ image: new ort.Tensor('float32', Float32Array.from(imgs), [1, 3, 32, 32]) });
    const all = Uint32Array.from({ length: 64 }, (_, i) => i);
    expectNear(out.tokens.data as Float32Array, forwardEncoder(params, c, imgs, all, 1).latent!, 'ViT-Tiny tokens');
  });

  for (const [label, c] of cases) {
    it(`encoder (all patches): tokens and cls — ${label}`, async () => {
      const params = perturbed(c, 3);
      const N = 3, L = numPatches(c), D = c.embedDim;
      const bytes = encoderOnnx(c, params);
      const decoded = ModelProto.toObject(ModelProto.decode(bytes), { longs: Number }) as { opset_import: { version: number }[]; ir_version: number };
      expect(decoded.opset_import[0].version).toBe(17);
      const imgs = randn(N * c.inChans * c.imgSize ** 2, 9);
      const s = await session(bytes);
      const out = await s.run({ image: new ort.Tensor('float32', Float32Array.from(imgs), [N, c.inChans, c.imgSize, c.imgSize]) });
      const all = Uint32Array.from({ length: N * L }, (_, i) => i % L);
      const ref = forwardEncoder(params, c, imgs, all, N).latent!;
      expect(out.tokens.dims).toEqual([N, 1 + L, D]);
      expectNear(out.tokens.data as Float32Array, ref, 'tokens');
      const cls = Float64Array.from({ length: N * D }, (_, i) => ref[Math.floor(i / D) * (1 + L) * D + (i % D)]);
      expectNear(out.cls.data as Float32Array, cls, 'cls');
    });

    it(`MAE reconstruction for a masking: pred and mask — ${label}`, async () => {
      const params = perturbed(c, 4);
      const N = 2, L = numPatches(c), V = 3;
      const imgs = randn(N * c.inChans * c.imgSize ** 2, 10);
      const mk = randomMasking(Float32Array.from(randn(N * L, 11)), N, L, V);
      const s = await session(maeOnnx(c, params));
      const i64 = (a: Uint32Array, dims: number[]) => new ort.Tensor('int64', BigInt64Array.from(a, (v) => BigInt(v)), dims);
      const out = await s.run({
        image: new ort.Tensor('float32', Float32Array.from(imgs), [N, c.inChans, c.imgSize, c.imgSize]),
        ids_keep: i64(mk.idsKeep, [N, V]), ids_restore: i64(mk.idsRestore, [N, L]),
      });
      const enc = forwardEncoder(params, c, imgs, mk.idsKeep, N);
      const ref = forwardDecoder(params, c, enc.latent!, mk.idsRestore, N).pred;
      expect(out.pred.dims).toEqual([N, L, patchDim(c)]);
      expectNear(out.pred.data as Float32Array, ref, 'pred');
      expect(Array.from(out.mask.data as Float32Array)).toEqual(Array.from(mk.mask));
      // one visible patch works too (V is symbolic)
      const one = randomMasking(Float32Array.from(randn(N * L, 12)), N, L, 1);
      const out1 = await s.run({
        image: new ort.Tensor('float32', Float32Array.from(imgs), [N, c.inChans, c.imgSize, c.imgSize]),
        ids_keep: i64(one.idsKeep, [N, 1]), ids_restore: i64(one.idsRestore, [N, L]),
      });
      const enc1 = forwardEncoder(params, c, imgs, one.idsKeep, N);
      expectNear(out1.pred.data as Float32Array, forwardDecoder(params, c, enc1.latent!, one.idsRestore, N).pred, 'pred (V = 1)');
    });
  }
});

/** Debian's python3-onnx, when installed: ONNX's own checker (full_check) and strict shape inference. */
const hasOnnx = spawnSync('/usr/bin/python3', ['-c', 'import onnx'], { stdio: 'ignore' }).status === 0;

describe('ONNX checker (python3-onnx, optional)', () => {
  it.skipIf(!hasOnnx)('both graphs pass onnx.checker.check_model(full_check=True) and strict shape inference', () => {
    const c = maeConfig('test', { imgSize: 16, patchSize: 4, inChans: 3 });
    const params = perturbed(c, 5);
    const dir = mkdtempSync(join(tmpdir(), 'onnx-check-'));
    try {
      writeFileSync(join(dir, 'encoder.onnx'), encoderOnnx(c, params));
      writeFileSync(join(dir, 'mae.onnx'), maeOnnx(c, params));
      const out = execFileSync('/usr/bin/python3', ['scripts/torch-export/check_onnx.py', join(dir, 'encoder.onnx'), join(dir, 'mae.onnx')], { encoding: 'utf8' });
      expect(out).toMatch(/encoder\.onnx: OK .*\('tokens', \['N', 17, 32\]\)/);
      expect(out).toMatch(/mae\.onnx: OK .*\('pred', \['N', 16, 48\]\)/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
