import { describe, expect, it, type TestContext } from 'vitest';
import { Arena, ArenaLayout, upload } from '../../src/gpu/buffers';
import * as gpuOps from '../../src/gpu/ops/layernorm';
import type { LayernormVariant } from '../../src/gpu/ops/layernorm';
import * as ref from '../../src/ref/layernorm';
import { GpuError, type Gpu } from '../../src/gpu/device';
import { ceilDiv, type Recorder } from '../../src/gpu/kernels';
import { grid2d, scratch, subgroupWorkgroupSize } from '../../src/gpu/ops/common';
import { TOL, checkGradients, dot, expectClose, expectSameBits, gpuTensor, randn, read, run, testGpu, testGpuForVariant, REDUCTION_VARIANTS } from '../helpers';

// [name, rows, C]
const SHAPES: Array<[string, number, number]> = [
  ['tiny', 1, 1],
  ['one channel', 5, 1],
  ['odd', 7, 13],
  ['C not a multiple of the workgroup', 3, 67],
  ['C prime, rows odd', 11, 101],
  ['rows not a multiple of the row chunk', 37, 200],
  ['ViT-Tiny encoder, one visible patch, batch 8', 8 * 2, 192],
  ['ViT-Tiny encoder, 1+16 tokens, batch 8', 8 * 17, 192],
  ['decoder, 1+64 tokens, width 128, batch 8', 8 * 65, 128],
  ['width 384', 8 * 17, 384],
  ['width 768', 33, 768],
];

/** The test's device, or a skip that says why, when it cannot run `variant`. */
const gpuFor = (variant: LayernormVariant, ctx: TestContext): Promise<Gpu> => testGpuForVariant(variant, gpuOps.layernormVariants, ctx);

interface Case {
  x: Float64Array;
  weight: Float64Array;
  bias: Float64Array;
  dout: Float64Array;
  dweight0: Float64Array;
  dbias0: Float64Array;
  /** What dx holds before an accumulateDx backward (the residual stream's gradient). */
  dres0: Float64Array;
}

function makeCase(rows: number, C: number, seed: number, offset = 0, noise = 1): Case {
  const x = randn(rows * C, seed, noise).map((v) => Math.fround(v + offset));
  const weight = randn(C, seed + 1).map((v) => Math.fround(1 + 0.5 * v));
  return {
    x, weight,
    bias: randn(C, seed + 2),
    dout: randn(rows * C, seed + 3),
    dweight0: randn(C, seed + 4), // parameter gradients accumulate onto what is there
    dbias0: randn(C, seed + 5),
    dres0: randn(rows * C, seed + 6),
  };
}

function reference(k: Case, rows: number, C: number) {
  const out = new Float64Array(rows * C), mean = new Float64Array(rows), rstd = new Float64Array(rows);
  ref.layernormForward(out, mean, rstd, k.x, k.weight, k.bias, rows, C);
  const dx = new Float64Array(rows * C), dweight = Float64Array.from(k.dweight0), dbias = Float64Array.from(k.dbias0);
  ref.layernormBackward(dx, dweight, dbias, k.dout, k.x, k.weight, mean, rstd, rows, C);
  const dres = Float64Array.from(k.dres0);
  ref.layernormBackward(dres, new Float64Array(C), new Float64Array(C), k.dout, k.x, k.weight, mean, rstd, rows, C, true);
  return { out, mean, rstd, dx, dweight, dbias, dres };
}

/**
 * Forward then backward on the GPU, the backward fed the GPU's own saved mean and rstd; then the
 * backward again with accumulateDx onto dres (its own dweight/dbias, as a model's second norm).
 */
async function onGpu(gpu: Gpu, k: Case, rows: number, C: number, variant: LayernormVariant = 'workgroup', assignParamGrads = false) {
  const t = {
    x: gpuTensor(gpu, k.x), weight: gpuTensor(gpu, k.weight), bias: gpuTensor(gpu, k.bias), dout: gpuTensor(gpu, k.dout),
    out: gpuTensor(gpu, randn(rows * C, 91)), mean: gpuTensor(gpu, rows), rstd: gpuTensor(gpu, rows),
    dx: gpuTensor(gpu, randn(rows * C, 92)), // non-zero start: "=" must overwrite it
    dweight: gpuTensor(gpu, k.dweight0), dbias: gpuTensor(gpu, k.dbias0),
    dres: gpuTensor(gpu, k.dres0), dweight2: gpuTensor(gpu, C), dbias2: gpuTensor(gpu, C),
  };
  await run(gpu, (rec) => {
    gpuOps.layernormForward(rec, t.out, t.mean, t.rstd, t.x, t.weight, t.bias, rows, C, 1e-6, variant);
    const backward = () => {
      gpuOps.layernormBackward(rec, t.dx, t.dweight, t.dbias, t.dout, t.x, t.weight, t.mean, t.rstd, rows, C, false, variant);
      gpuOps.layernormBackward(rec, t.dres, t.dweight2, t.dbias2, t.dout, t.x, t.weight, t.mean, t.rstd, rows, C, true, variant);
    };
    if (assignParamGrads) rec.assignParamGrads(backward);
    else backward();
  });
  return {
    out: await read(gpu, t.out), mean: await read(gpu, t.mean), rstd: await read(gpu, t.rstd),
    dx: await read(gpu, t.dx), dweight: await read(gpu, t.dweight), dbias: await read(gpu, t.dbias), dres: await read(gpu, t.dres),
  };
}

type Got = Awaited<ReturnType<typeof onGpu>>;
type Want = ReturnType<typeof reference>;

/** Every output against the reference; `dxScale` widens dx's atol where rstd makes dx larger. */
function expectAllClose(got: Got, want: Want, rows: number, what: string, dxScale = 1): void {
  expectClose(got.out, want.out, TOL.reduction, `out${what}`);
  expectClose(got.mean, want.mean, TOL.reduction, `mean${what}`);
  expectClose(got.rstd, want.rstd, TOL.reduction, `rstd${what}`);
  const dxTol = { atol: TOL.gradient.atol * dxScale, rtol: TOL.gradient.rtol };
  expectClose(got.dx, want.dx, dxTol, `dx${what}`);
  expectClose(got.dres, want.dres, dxTol, `dres += dx (accumulateDx)${what}`);
  // dweight and dbias sum over rows; atol grows like √rows for a sum of random-sign terms.
  const sumTol = { atol: TOL.gradient.atol * Math.sqrt(rows), rtol: TOL.gradient.rtol };
  expectClose(got.dweight, want.dweight, sumTol, `dweight${what}`);
  expectClose(got.dbias, want.dbias, sumTol, `dbias${what}`);
}

describe.each(REDUCTION_VARIANTS)("layernorm, '%s' variant (GPU vs float64 reference)", (variant) => {
  SHAPES.forEach(([name, rows, C], s) => {
    it(`${name}: rows=${rows} C=${C}, forward and backward (dx = and +=)`, async (ctx) => {
      const gpu = await gpuFor(variant, ctx);
      const k = makeCase(rows, C, 100 + 10 * s);
      expectAllClose(await onGpu(gpu, k, rows, C, variant), reference(k, rows, C), rows, '');
    });
  });

  // A large common offset: one ulp of 1000 in float32 (6e-5) is 0.1% of σ ≈ 0.058, so any
  // E[x²] − E[x]² or unshifted sum is visibly wrong here, and so is a backward that trusts the
  // float32-rounded saved mean.
  for (const [rows, C] of [[16, 192], [9, 768]]) {
    it(`rows with a large common offset (x = 1000 + 0.1·noise): rows=${rows} C=${C}`, async (ctx) => {
      const gpu = await gpuFor(variant, ctx);
      const k = makeCase(rows, C, 7 + C, 1000, 0.1);
      // dx is rstd ≈ 17 times larger than with unit variance; rtol stays the preset's.
      expectAllClose(await onGpu(gpu, k, rows, C, variant), reference(k, rows, C), rows, ' (offset rows)', 17);
    });
  }

  // A step's first backward: dweight and dbias are assigned over what they held (garbage here),
  // as the reference's sums onto zeros.
  it('inside Recorder.assignParamGrads: dweight = and dbias =', async (ctx) => {
    const gpu = await gpuFor(variant, ctx);
    const [rows, C] = [8 * 17, 192];
    const k = makeCase(rows, C, 77);
    const want = reference({ ...k, dweight0: new Float64Array(C), dbias0: new Float64Array(C) }, rows, C);
    expectAllClose(await onGpu(gpu, k, rows, C, variant, true), want, rows, ' (assigned)');
  });

  it('rows beyond 65535 workgroups (2-D grid)', async (ctx) => {
    const gpu = await gpuFor(variant, ctx);
    const [rows, C] = [65_600, 3];
    const k = makeCase(rows, C, 55);
    // 65600 rows: the parameter sums' rounding grows with their length (√rows, in expectAllClose).
    expectAllClose(await onGpu(gpu, k, rows, C, variant), reference(k, rows, C), rows, '');
  });

  it('is deterministic: the same inputs give bit-identical outputs', async (ctx) => {
    const gpu = await gpuFor(variant, ctx);
    const [rows, C] = [8 * 65, 128];
    const k = makeCase(rows, C, 31);
    const a = await onGpu(gpu, k, rows, C, variant);
    const b = await onGpu(gpu, k, rows, C, variant);
    for (const key of ['out', 'mean', 'rstd', 'dx', 'dweight', 'dbias', 'dres'] as const) {
      expectSameBits(b[key], a[key], `${key} (${variant})`);
    }
  });

  // What the residual stream did before: backward into a scratch, then dres += it (addInPlace,
  // one float32 add per element). accumulateDx must add the same float32 dx onto dres.
  it('accumulateDx gives dres + dx, the same bits as assigning dx and adding it', async (ctx) => {
    const gpu = await gpuFor(variant, ctx);
    const [rows, C] = [8 * 17, 192];
    const k = makeCase(rows, C, 71);
    const got = await onGpu(gpu, k, rows, C, variant);
    const sum = Float32Array.from(k.dres0, (r, i) => Math.fround(r + got.dx[i]));
    expectSameBits(got.dres, sum, `dres (${variant})`);
  });
});

// The subgroup kernels at workgroup sizes the wrapper does not pick on this device: in a workgroup
// of several subgroups only the one holding invocation 0 works; one smaller than a subgroup is a
// subgroup with idle lanes. Dispatched directly, as the wrapper would with another SG_WG.
describe('layernorm subgroup kernels at other workgroup sizes', () => {
  for (const sgWg of [4, 16, 64, 256]) {
    it(`SG_WG=${sgWg}: forward and dx (= and +=) with the chunk partial sums (and their vec4 forms where C % 4 = 0), vs float64`, async (ctx) => {
      const gpu = await gpuFor('subgroup', ctx);
      for (const [rows, C, seed] of [[7, 13, 1], [8 * 17, 192, 2], [9, 769, 3]]) {
        const k = makeCase(rows, C, 300 + seed);
        const want = reference(k, rows, C);
        const t = {
          x: gpuTensor(gpu, k.x), weight: gpuTensor(gpu, k.weight), bias: gpuTensor(gpu, k.bias), dout: gpuTensor(gpu, k.dout),
          out: gpuTensor(gpu, rows * C), mean: gpuTensor(gpu, rows), rstd: gpuTensor(gpu, rows),
          dx: gpuTensor(gpu, randn(rows * C, 93)), dres: gpuTensor(gpu, k.dres0),
          dweight: gpuTensor(gpu, k.dweight0), dbias: gpuTensor(gpu, k.dbias0),
          dweight2: gpuTensor(gpu, C), dbias2: gpuTensor(gpu, C),
          out4: gpuTensor(gpu, rows * C), mean4: gpuTensor(gpu, rows), rstd4: gpuTensor(gpu, rows),
        };
        const vec4 = C % 4 === 0; // layernorm_forward_vec4 too, 3 rows a workgroup (rows % 3 ≠ 0)
        const spec = (entry: string, acc?: boolean) => ({
          shader: 'layernorm_subgroups', entry, constants: { SG_WG: sgWg, ...(acc === undefined ? {} : { ACCUMULATE_DX: acc ? 1 : 0 }) },
        });
        await run(gpu, (rec) => {
          const nchunks = ceilDiv(rows, gpuOps.LN_ROWS_PER_CHUNK);
          const params = [rows, C, { f32: 1e-6 }, nchunks];
          rec.dispatch(spec('layernorm_forward'), [t.out, t.mean, t.rstd, t.x, t.weight, t.bias], params, grid2d(rows, 1));
          if (vec4) {
            const forward4 = { shader: 'layernorm_subgroups', entry: 'layernorm_forward_vec4', constants: { SG_WG: sgWg, ROWS_PER_WORKGROUP: 3 } };
            rec.dispatch(forward4, [t.out4, t.mean4, t.rstd4, t.x, t.weight, t.bias], params, grid2d(ceilDiv(rows, 3), 1));
          }
          // dx (=) onto dweight/dbias's starting values, then dres += dx onto zeros (the same sums),
          // the second in vec4s where C % 4 = 0.
          for (const [dx, acc, dw, db] of [[t.dx, false, t.dweight, t.dbias], [t.dres, true, t.dweight2, t.dbias2]] as const) {
            const partial = scratch(gpu.device, 'layernorm-partial', 2 * nchunks * C);
            const entry = acc && vec4 ? 'layernorm_backward_dx_partial_vec4' : 'layernorm_backward_dx_partial';
            rec.dispatch(spec(entry, acc), [dx, partial, t.dout, t.x, t.weight, t.mean, t.rstd], params, grid2d(nchunks, 1));
            rec.dispatch({ shader: 'layernorm', entry: 'layernorm_backward_params' }, [dw, db, partial], params, [ceilDiv(C, 64)]);
          }
        });
        const what = ` (SG_WG=${sgWg}, rows=${rows}, C=${C})`;
        expectClose(await read(gpu, t.out), want.out, TOL.reduction, `out${what}`);
        expectClose(await read(gpu, t.mean), want.mean, TOL.reduction, `mean${what}`);
        expectClose(await read(gpu, t.rstd), want.rstd, TOL.reduction, `rstd${what}`);
        if (vec4) {
          expectClose(await read(gpu, t.out4), want.out, TOL.reduction, `out, vec4${what}`);
          expectClose(await read(gpu, t.mean4), want.mean, TOL.reduction, `mean, vec4${what}`);
          expectClose(await read(gpu, t.rstd4), want.rstd, TOL.reduction, `rstd, vec4${what}`);
        }
        expectClose(await read(gpu, t.dx), want.dx, TOL.gradient, `dx${what}`);
        expectClose(await read(gpu, t.dres), want.dres, TOL.gradient, `dres += dx${what}`);
        expectClose(await read(gpu, t.dweight), want.dweight, TOL.gradient, `dweight from the chunk partials${what}`);
        expectClose(await read(gpu, t.dbias), want.dbias, TOL.gradient, `dbias from the chunk partials${what}`);
        expectClose(await read(gpu, t.dweight2), want.dweight.map((v, i) => v - k.dweight0[i]), TOL.gradient, `dweight (+= pass)${what}`);
        expectClose(await read(gpu, t.dbias2), want.dbias.map((v, i) => v - k.dbias0[i]), TOL.gradient, `dbias (+= pass)${what}`);
      }
    });
  }
});

describe('layernorm variants', () => {
  it("lists 'subgroup' exactly when the device has subgroups, and refuses it clearly without", async () => {
    const gpu = await testGpu();
    expect(gpuOps.layernormVariants(gpu)).toEqual(gpu.hasSubgroups ? ['workgroup', 'subgroup'] : ['workgroup']);
    const bare = Object.create(gpu, { hasSubgroups: { value: false } }) as Gpu;
    expect(gpuOps.layernormVariants(bare)).toEqual(['workgroup']);
    const rec = { gpu: bare } as unknown as Recorder; // refused before anything is recorded
    const t = gpuTensor(gpu, 8);
    const fwd = () => gpuOps.layernormForward(rec, t, t, t, t, t, t, 2, 4, 1e-6, 'subgroup');
    const bwd = () => gpuOps.layernormBackward(rec, t, t, t, t, t, t, t, t, 2, 4, true, 'subgroup');
    for (const f of [fwd, bwd]) {
      expect(f).toThrow(GpuError);
      expect(f).toThrow(/'subgroup' needs the WebGPU feature 'subgroups'.*use 'workgroup'/);
    }
  });

  it("'subgroup' runs where listed, and its workgroup size is the adapter's subgroup size", async (ctx) => {
    const gpu = await gpuFor('subgroup', ctx);
    const wg = subgroupWorkgroupSize(gpu);
    const info = (gpu.device as { adapterInfo?: { subgroupMaxSize?: number } }).adapterInfo;
    expect(wg).toBe(info?.subgroupMaxSize ?? 32);
  });
});

describe('layernorm (workgroup variant)', () => {

  it('binds slices of one arena as inputs and outputs of the same dispatch', async () => {
    const gpu = await testGpu();
    const [rows, C] = [17, 40];
    const k = makeCase(rows, C, 61);
    const want = reference(k, rows, C);
    const acts = new ArenaLayout();
    for (const [name, n] of [['x', rows * C], ['out', rows * C], ['mean', rows], ['rstd', rows], ['dout', rows * C], ['dx', rows * C]] as const) acts.add(name, [n]);
    const params = new ArenaLayout();
    params.add('weight', [C]);
    params.add('bias', [C]);
    params.add('dweight', [C]);
    params.add('dbias', [C]);
    const A = new Arena(gpu.device, acts, 'activations');
    const P = new Arena(gpu.device, params, 'params');
    upload(gpu.device, A.tensor('x'), Float32Array.from(k.x));
    upload(gpu.device, A.tensor('dout'), Float32Array.from(k.dout));
    upload(gpu.device, P.tensor('weight'), Float32Array.from(k.weight));
    upload(gpu.device, P.tensor('bias'), Float32Array.from(k.bias));
    upload(gpu.device, P.tensor('dweight'), Float32Array.from(k.dweight0));
    upload(gpu.device, P.tensor('dbias'), Float32Array.from(k.dbias0));
    const a = (n: string) => A.tensor(n), p = (n: string) => P.tensor(n);
    await run(gpu, (rec) => {
      gpuOps.layernormForward(rec, a('out'), a('mean'), a('rstd'), a('x'), p('weight'), p('bias'), rows, C);
      gpuOps.layernormBackward(rec, a('dx'), p('dweight'), p('dbias'), a('dout'), a('x'), p('weight'), a('mean'), a('rstd'), rows, C);
    });
    expectClose(await read(gpu, a('out')), want.out, TOL.reduction, 'out');
    expectClose(await read(gpu, a('dx')), want.dx, TOL.gradient, 'dx');
    expectClose(await read(gpu, p('dweight')), want.dweight, TOL.gradient, 'dweight');
    expectClose(await read(gpu, p('dbias')), want.dbias, TOL.gradient, 'dbias');
    A.destroy();
    P.destroy();
  });
});

describe('layernorm reference vs finite differences', () => {
  for (const [rows, C, offset] of [[3, 7, 0], [2, 5, 10]]) {
    it(`rows=${rows} C=${C} offset=${offset}`, () => {
      const x = randn(rows * C, 41 + C).map((v) => v + offset);
      const weight = randn(C, 42), bias = randn(C, 43), w = randn(rows * C, 44);
      const loss = (i: Record<string, Float64Array>) => {
        const out = new Float64Array(rows * C);
        ref.layernormForward(out, new Float64Array(rows), new Float64Array(rows), i.x, i.weight, i.bias, rows, C);
        return dot(out, w);
      };
      const out = new Float64Array(rows * C), mean = new Float64Array(rows), rstd = new Float64Array(rows);
      ref.layernormForward(out, mean, rstd, x, weight, bias, rows, C);
      const dx = new Float64Array(rows * C), dweight = new Float64Array(C), dbias = new Float64Array(C);
      ref.layernormBackward(dx, dweight, dbias, w, x, weight, mean, rstd, rows, C);
      checkGradients({ x, weight, bias }, loss, { x: dx, weight: dweight, bias: dbias });
    });
  }

  // The residual use of accumulateDx: y = x + LN(x), so dL/dx = dy (the skip path, already in
  // dx) + LN's backward added onto it.
  it('accumulateDx: y = x + layernorm(x), rows=3 C=7', () => {
    const [rows, C] = [3, 7];
    const x = randn(rows * C, 51), weight = randn(C, 52), bias = randn(C, 53), w = randn(rows * C, 54);
    const loss = (i: Record<string, Float64Array>) => {
      const out = new Float64Array(rows * C);
      ref.layernormForward(out, new Float64Array(rows), new Float64Array(rows), i.x, i.weight, i.bias, rows, C);
      return dot(out, w) + dot(i.x, w);
    };
    const out = new Float64Array(rows * C), mean = new Float64Array(rows), rstd = new Float64Array(rows);
    ref.layernormForward(out, mean, rstd, x, weight, bias, rows, C);
    const dx = Float64Array.from(w), dweight = new Float64Array(C), dbias = new Float64Array(C);
    ref.layernormBackward(dx, dweight, dbias, w, x, weight, mean, rstd, rows, C, true);
    checkGradients({ x, weight, bias }, loss, { x: dx, weight: dweight, bias: dbias });
  });
});

describe('LayernormParamSums: every norm\'s dweight/dbias of a backward in one dispatch', () => {
  // Norms of different widths and row counts, in one gradient arena: the deferred sums give the
  // bits of each norm's own backward_params, onto what the gradients hold (+=) and, inside
  // assignParamGrads, over garbage (=).
  const norms: Array<[number, number]> = [[8 * 17, 192], [37, 200], [8 * 65, 128], [5, 1]];
  for (const variant of REDUCTION_VARIANTS) {
    for (const assign of [false, true]) {
      it(`${variant}, ${assign ? 'assigned' : 'accumulated'}: bit-identical to one dispatch per norm`, async (ctx) => {
        const gpu = await gpuFor(variant, ctx);
        const layout = new ArenaLayout();
        norms.forEach(([, C], i) => {
          layout.add(`n${i}.weight`, [C]);
          layout.add(`n${i}.bias`, [C]);
        });
        const start = Float32Array.from(randn(layout.size, 5));
        const results: Float32Array[] = [];
        for (const deferred of [false, true]) {
          const grads = new Arena(gpu.device, layout, 'grads');
          upload(gpu.device, grads.all, start);
          const sums = new gpuOps.LayernormParamSums(gpu.device, norms.map(([rows, C]) => ({ rows, C })));
          const cases = norms.map(([rows, C], i) => ({ rows, C, k: makeCase(rows, C, 300 + i) }));
          await run(gpu, (rec) => {
            const backward = () => {
              cases.forEach(({ rows, C, k }, i) => {
                const mean = gpuTensor(gpu, rows), rstd = gpuTensor(gpu, rows), x = gpuTensor(gpu, k.x), weight = gpuTensor(gpu, k.weight);
                gpuOps.layernormForward(rec, gpuTensor(gpu, rows * C), mean, rstd, x, weight, gpuTensor(gpu, k.bias), rows, C, 1e-6, variant);
                gpuOps.layernormBackward(rec, gpuTensor(gpu, rows * C), grads.tensor(`n${i}.weight`), grads.tensor(`n${i}.bias`), gpuTensor(gpu, k.dout), x, weight, mean, rstd, rows, C, false, variant, deferred ? sums : undefined);
              });
              if (deferred) sums.record(rec);
            };
            if (assign) rec.assignParamGrads(backward);
            else backward();
          });
          results.push(await read(gpu, grads.all));
          sums.destroy();
          grads.destroy();
        }
        expectSameBits(results[1], results[0], 'dweight and dbias of every norm');
        // And they are the norms' gradients (the immediate path is checked against float64 above).
        if (assign) {
          const k = makeCase(norms[0][0], norms[0][1], 300);
          const want = reference({ ...k, dweight0: new Float64Array(norms[0][1]), dbias0: new Float64Array(norms[0][1]) }, norms[0][0], norms[0][1]);
          const e = layout.get('n0.weight');
          expectClose(results[1].subarray(e.start, e.start + e.length), want.dweight, { atol: TOL.gradient.atol * Math.sqrt(norms[0][0]), rtol: TOL.gradient.rtol }, 'n0 dweight');
        }
      });
    }
  }

  it('refuses more norms than it was sized for, and gradients in different buffers', async () => {
    const gpu = await testGpu();
    const sums = new gpuOps.LayernormParamSums(gpu.device, [{ rows: 4, C: 8 }]);
    const [w, b] = [gpuTensor(gpu, 8), gpuTensor(gpu, 8)];
    expect(() => sums.defer(w, b, 1, 8)).toThrow(/one buffer/);
    const arena = new Arena(gpu.device, (() => { const l = new ArenaLayout(); l.add('w', [8]); l.add('b', [8]); return l; })(), 'g');
    sums.defer(arena.tensor('w'), arena.tensor('b'), 1, 8);
    expect(() => sums.defer(arena.tensor('w'), arena.tensor('b'), 1, 8)).toThrow(/more than the .* partials it was sized for/);
    // What a failed recording deferred is discarded: the next backward has the whole buffer again.
    sums.discard();
    expect(() => sums.defer(arena.tensor('w'), arena.tensor('b'), 1, 8)).not.toThrow();
    sums.destroy();
    arena.destroy();
  });
});
