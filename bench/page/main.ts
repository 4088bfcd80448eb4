/**
 * The TensorFlow.js peers in Chromium: in this page, on one adapter, interleaved —
 *   step    our ViT-Tiny MAE training step (MaeModel, WGSL on WebGPU) vs the same step in tfjs
 *           (bench/tfjs-mae.ts) on tfjs-backend-webgpu built on OUR GPUDevice and on
 *           tfjs-backend-webgl (its own WebGL2 context); wall clock of each repetition, from the
 *           call that records/enqueues the step to the backend finishing it (peer-core.ts);
 *   matmul  every Linear product of the step: ours (the engine's default variant) vs tf.matMul on
 *           both backends, each verified against float64 first; GPU time where the backend has a
 *           timer (our timestamp passes, tf.time kernelMs), the wall clock of one call, and the
 *           wall clock per product of `matmulCalls` products made back to back before one wait
 *           (a model's forward: the backend's per-wait latency paid once, not per product).
 * The result is shown on the page and left in `window.__benchResult` (JSON) for the runner
 * (bench/page/runner.ts, `npm run bench -- peer --browser`), which writes it to
 * bench/results/peer-chromium.json. Query parameters: batch, mask, reps, warmup, matmulBatch
 * (0 skips the matmuls), matmulReps, matmulCalls, webgl=0 (skip WebGL).
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-core/dist/register_all_gradients';
import '@tensorflow/tfjs-backend-webgl';
import { WebGPUBackend } from '@tensorflow/tfjs-backend-webgpu';
import { mulberry32 } from '../../src/core/random';
import { maeConfig, numPatches } from '../../src/engine/config';
import { initParams } from '../../src/engine/init';
import { MaeModel } from '../../src/engine/mae';
import { maeParamLayout } from '../../src/engine/params';
import { tuneMatmul, type TuneReport } from '../../src/gpu/autotune';
import { tuneKernelsForRecording } from '../../src/gpu/autotune-families';
import { acquireBrowserGpu, type Gpu } from '../../src/gpu/device';
import { Recorder } from '../../src/gpu/kernels';
import { lenKeepFor, randomMasking } from '../../src/gpu/ops/masking';
import { shaderSources } from '../../src/gpu/shader-sources';
import { GpuTimer } from '../../src/gpu/timing';
import {
  GEOMETRY, STEP_OPTS, activate, geomean, matmulCases, matmulTol, ourMatmulCase, ourStepContender, registerTfjsWebgpuOn, speedup,
  targetReport, tfjsFirstStepLoss, tfjsMatmulContender, tfjsStepContender, tfjsWebglBackend, tfjsWebgpuBackend, vitLinearShapes,
  type Contender, type TfjsBackend,
} from '../peer-core';
import { compare, median, round as r4, type Verification } from '../stats';
import { randn } from '../../test/numerics';
import { TfjsMae } from '../tfjs-mae';

const PEER_WEBGPU = 'dmae-peer-tfjs-webgpu';

declare global {
  interface Window {
    __benchResult?: unknown;
  }
}

const q = new URLSearchParams(location.search);
const int = (k: string, d: number): number => (q.has(k) ? Number(q.get(k)) : d);
/** SwiftShader defaults: a small batch and few repetitions keep the page under ~5 minutes. */
const SETTINGS = {
  batch: int('batch', 2),
  maskRatio: q.has('mask') ? Number(q.get('mask')) : 0.75,
  reps: int('reps', 3),
  warmup: int('warmup', 1),
  matmulBatch: int('matmulBatch', 8),
  matmulReps: int('matmulReps', 3),
  matmulCalls: int('matmulCalls', 8),
  webgl: q.get('webgl') !== '0',
  /** Tune our matmul variants first (memory only), as the studio's trainer does. */
  tune: q.get('tune') !== '0',
};

const logEl = document.getElementById('log')!;
const statusEl = document.getElementById('status')!;
const lines: string[] = [];
function log(s: string): void {
  lines.push(s);
  logEl.textContent = lines.join('\n');
  console.log(s);
}
const status = (s: string): void => {
  statusEl.textContent = s;
};

interface PageTiming {
  wallMedianMs: number;
  wallMinMs: number;
  wallSamplesMs: number[];
  gpuMedianMs?: number;
  gpuSamplesMs?: number[];
  /** Wall clock per product when matmulCalls are made before one wait (the matmuls only). */
  batchedMsPerCall?: number;
}


/** bench/lib.ts's timeInterleaved, in the page: warm-up rounds, then rounds of one repetition of each contender. */
async function interleave(cs: Contender[], warmup: number, reps: number, withTimestamps: boolean): Promise<Map<string, PageTiming>> {
  const samples = new Map(cs.map((c) => [c.name, [] as { wallMs: number; gpuMs?: number }[]]));
  for (let i = 0; i < warmup; i++) for (const c of cs) await c.timed(withTimestamps);
  for (let i = 0; i < reps; i++) for (const c of cs) samples.get(c.name)!.push(await c.timed(withTimestamps));
  const out = new Map<string, PageTiming>();
  for (const c of cs) {
    const s = samples.get(c.name)!;
    const wall = s.map((x) => x.wallMs);
    const t: PageTiming = { wallMedianMs: r4(median(wall)), wallMinMs: r4(Math.min(...wall)), wallSamplesMs: wall.map((x) => r4(x)) };
    if (s.every((x) => x.gpuMs !== undefined)) {
      const g = s.map((x) => x.gpuMs!);
      t.gpuMedianMs = r4(median(g));
      t.gpuSamplesMs = g.map((x) => r4(x));
    }
    out.set(c.name, t);
  }
  return out;
}

function table(title: string, head: string[], rows: (string | number)[][]): void {
  const el = document.createElement('div');
  const h = document.createElement('h2');
  h.textContent = title;
  const t = document.createElement('table');
  t.innerHTML = `<tr>${head.map((x) => `<th>${x}</th>`).join('')}</tr>${rows.map((r) => `<tr>${r.map((x) => `<td>${x}</td>`).join('')}</tr>`).join('')}`;
  el.append(h, t);
  document.getElementById('tables')!.append(el);
}

function glInfo(): { renderer: string; vendor: string; version: string; float32: boolean; timerQuery: boolean } {
  const gl = (tf.findBackend('webgl') as import('@tensorflow/tfjs-backend-webgl').MathBackendWebGL).getGPGPUContext().gl;
  const ext = gl.getExtension('WEBGL_debug_renderer_info');
  return {
    renderer: String(ext ? gl.getParameter(ext.UNMASKED_RENDERER_WEBGL) : gl.getParameter(gl.RENDERER)),
    vendor: String(ext ? gl.getParameter(ext.UNMASKED_VENDOR_WEBGL) : gl.getParameter(gl.VENDOR)),
    version: String(gl.getParameter(gl.VERSION)),
    float32: tf.env().getBool('WEBGL_RENDER_FLOAT32_ENABLED'),
    timerQuery: tf.env().getNumber('WEBGL_DISJOINT_QUERY_TIMER_EXTENSION_VERSION') > 0,
  };
}

async function run(): Promise<object> {
  const t0 = performance.now();
  const S = SETTINGS;
  status('acquiring the WebGPU device…');
  const gpu: Gpu = await acquireBrowserGpu(shaderSources);
  log(`adapter: ${gpu.adapter.description} (timestamps: ${gpu.hasTimestamps})`);
  registerTfjsWebgpuOn(tf, WebGPUBackend, gpu.device, PEER_WEBGPU);
  const backends: TfjsBackend[] = [tfjsWebgpuBackend(tf, PEER_WEBGPU, gpu.device)];
  await activate(tf, backends[0]);
  let gl: ReturnType<typeof glInfo> | null = null;
  if (S.webgl) {
    if (!(await tf.setBackend('webgl'))) throw new Error('tfjs could not initialise its WebGL backend');
    gl = glInfo();
    backends.push(tfjsWebglBackend(tf, 'webgl', gl.timerQuery));
    log(`WebGL: ${gl.renderer} (${gl.version}; float32 render targets: ${gl.float32}; timer queries: ${gl.timerQuery})`);
  }
  const impls = backends.map((b) => b.impl);

  // ---- the whole step ------------------------------------------------------------------------
  status('the training step…');
  const cfg = maeConfig('vit-tiny', GEOMETRY);
  const N = S.batch, L = numPatches(cfg), V = lenKeepFor(L, S.maskRatio);
  const params = initParams(maeParamLayout(cfg), GEOMETRY.imgSize / GEOMETRY.patchSize, 1);
  const imgs = Float32Array.from(randn(N * GEOMETRY.inChans * GEOMETRY.imgSize ** 2, 3));
  const noise = mulberry32(4);
  const masking = randomMasking(Float32Array.from({ length: N * L }, () => noise()), N, L, V);
  const ours = new MaeModel(gpu, cfg, N, V);
  ours.uploadParams(params);
  ours.setBatch(imgs, masking);
  const tuning: Record<string, object | null> = {};
  const summary = (r: TuneReport | null) => r && { seconds: r4(r.seconds), method: r.method, classes: r.classes.map((c) => ({ key: c.key, chosen: c.chosen, source: c.source })) };
  if (S.tune) {
    status('tuning our matmul variants for the step…');
    tuning.step = summary((await tuneKernelsForRecording(gpu, (rec) => ours.recordStep(rec, STEP_OPTS), { store: null }))?.matmul ?? null);
    log(`tuned the step's matmuls in ${(tuning.step as { seconds?: number } | null)?.seconds ?? 0} s`);
  }
  const oursC = ourStepContender(gpu, undefined, 'ours', (rec) => ours.recordStep(rec, STEP_OPTS));
  const models: TfjsMae[] = [];
  const contenders: Contender[] = [oursC];
  const firstMs: Record<string, number> = {};
  const losses: Record<string, number> = {};
  let ts = performance.now();
  await oursC.timed(false);
  losses.ours = (await ours.readLosses()).loss;
  firstMs.ours = r4(performance.now() - ts);
  for (const b of backends) {
    await activate(tf, b);
    const m = new TfjsMae(tf, cfg, N, V, params, { lr: STEP_OPTS.lr });
    m.setBatch(imgs, masking);
    models.push(m);
    ts = performance.now();
    losses[b.impl] = await tfjsFirstStepLoss(tf, b, m);
    firstMs[b.impl] = r4(performance.now() - ts);
    contenders.push(tfjsStepContender(tf, b, m, b.impl));
  }
  const relDiff: Record<string, number> = {};
  for (const i of impls) relDiff[i] = Number((Math.abs(losses[i] - losses.ours) / Math.abs(losses.ours)).toExponential(3));
  const lossesAgree = Object.values(relDiff).every((d) => d <= 1e-3);
  log(`first step (compiles) ms ${JSON.stringify(firstMs)}; losses ${JSON.stringify(losses)}; relative differences ${JSON.stringify(relDiff)}`);
  const steps = await interleave(contenders, S.warmup, S.reps, false);
  const stepFig = (impl: string) => {
    const t = steps.get(impl)!;
    return { impl, ...t, imagesPerSecond: r4((N * 1000) / t.wallMedianMs) };
  };
  const stepFigures: Array<ReturnType<typeof stepFig> & { gpuMedianMs?: number; gpuSamplesMs?: number[] }> = ['ours', ...impls].map(stepFig);
  table(`Training step (batch ${N}, ${V} of ${L} visible): wall clock, median of ${S.reps}`, ['impl', 'ms', 'images/s', 'samples'], stepFigures.map((f) => [f.impl, f.wallMedianMs, f.imagesPerSecond, f.wallSamplesMs.join(', ')]));
  log(`step wall ms: ${stepFigures.map((f) => `${f.impl} ${f.wallMedianMs}`).join(', ')}`);
  if (gpu.hasTimestamps) {
    // Our step's GPU time, its whole submission between two timestamps, from repetitions of its own
    // after the interleaved ones: what of the wall clock is the kernels, and what surrounds them
    // (recording, the browser's GPU process, the wait).
    const timer = new GpuTimer(gpu.device, 4);
    const timed = ourStepContender(gpu, timer, 'ours', (rec) => ours.recordStep(rec, STEP_OPTS), undefined, { timed: 'submission' });
    const g = (await interleave([timed], 0, S.reps, true)).get('ours')!;
    timer.destroy();
    Object.assign(stepFigures[0], { gpuMedianMs: g.gpuMedianMs, gpuSamplesMs: g.gpuSamplesMs });
    log(`our step's GPU time: ${g.gpuMedianMs} ms (median of ${S.reps}), ${Math.round((100 * g.gpuMedianMs!) / stepFigures[0].wallMedianMs)} % of its wall clock`);
  }
  ours.destroy();
  for (const m of models) m.dispose();

  // ---- the matmuls ---------------------------------------------------------------------------
  const matmulFigures: object[] = [];
  const per: Record<string, { gpu: Record<string, number>; wall: Record<string, number>; batched: Record<string, number> }> = {};
  for (const i of impls) per[i] = { gpu: {}, wall: {}, batched: {} };
  let matmulFailures = 0;
  if (S.matmulBatch > 0) {
    const timer = gpu.hasTimestamps ? new GpuTimer(gpu.device) : undefined;
    const cases = matmulCases(vitLinearShapes(cfg, S.matmulBatch, V));
    if (S.tune) {
      status('tuning our matmul variants for the matmul shapes…');
      tuning.matmul = summary(await tuneMatmul(gpu, cases.map(({ layout, M, N: n, K }) => ({ layout, M, N: n, K })), { store: null }));
    }
    for (const [k, c] of cases.entries()) {
      status(`matmul ${k + 1} of ${cases.length}: ${c.id}`);
      const { M, N: Nn, K, layout } = c;
      const ours = ourMatmulCase(gpu, c);
      const { want, variant, record } = ours;
      const rec = new Recorder(gpu);
      record(rec);
      await rec.submit();
      const tol = matmulTol(K);
      const checks: Record<string, Verification> = { ours: compare(await ours.result(), want, tol, `ours ${c.id}`) };
      const theirs = backends.map((b) => tfjsMatmulContender(tf, b, `${b.impl}_${c.id}`, c));
      for (const [j, b] of backends.entries()) checks[b.impl] = compare(await theirs[j].result(), want, tol, `${b.impl} ${c.id}`);
      const oursM = ourStepContender(gpu, timer, `ours_${c.id}`, record);
      const oursBatched = ourStepContender(gpu, undefined, `ours_${c.id}`, (rec) => {
        for (let i = 0; i < S.matmulCalls; i++) record(rec);
      });
      let t: Map<string, PageTiming> | undefined;
      if (Object.values(checks).every((v) => v.verified)) {
        // Wall clocks from repetitions without timestamps (what a user's call costs: no timestamp
        // writes for ours, no tf.time per-program submissions for tfjs-webgpu), GPU times from
        // timestamped repetitions of their own.
        const cs = [oursM, ...theirs.map((x) => x.contender)];
        const wall = await interleave(cs, 1, S.matmulReps, false);
        const gpuTimes = await interleave(cs, 0, S.matmulReps, true);
        const batched = await interleave([oursBatched, ...theirs.map((x) => x.batched(S.matmulCalls))], S.warmup, S.matmulReps, false);
        const perCall = (n: string): number => r4(batched.get(n)!.wallMedianMs / S.matmulCalls);
        t = new Map([...wall].map(([n, w]) => [n, { ...w, gpuMedianMs: gpuTimes.get(n)!.gpuMedianMs, gpuSamplesMs: gpuTimes.get(n)!.gpuSamplesMs, batchedMsPerCall: perCall(n) }]));
        const a = t.get(oursM.name)!;
        for (const b of backends) {
          const o = t.get(`${b.impl}_${c.id}`)!;
          per[b.impl].wall[c.id] = speedup(a.wallMedianMs, o.wallMedianMs);
          per[b.impl].batched[c.id] = speedup(a.batchedMsPerCall!, o.batchedMsPerCall!);
          if (a.gpuMedianMs !== undefined && o.gpuMedianMs !== undefined && a.gpuMedianMs > 0 && o.gpuMedianMs > 0) per[b.impl].gpu[c.id] = speedup(a.gpuMedianMs, o.gpuMedianMs);
        }
        log(`${c.id} M=${M} N=${Nn} K=${K}: ${[oursM.name, ...theirs.map((x) => x.contender.name)].map((n) => `${n.split('_')[0]} ${t!.get(n)!.wallMedianMs} ms wall / ${t!.get(n)!.batchedMsPerCall} ms per call of ${S.matmulCalls} / ${t!.get(n)!.gpuMedianMs ?? '–'} ms GPU`).join('; ')}`);
      } else {
        matmulFailures++;
        log(`${c.id}: verification failed ${JSON.stringify(checks)}; not timed`);
      }
      const flops = 2 * M * Nn * K;
      for (const [impl, name] of [['ours', oursM.name], ...backends.map((b) => [b.impl, `${b.impl}_${c.id}`])] as [string, string][]) {
        const tm = t?.get(name);
        matmulFigures.push({
          id: c.id, layer: c.layer, layout, role: c.role, M, N: Nn, K, flops, impl, ...(impl === 'ours' ? { variant } : {}), ...checks[impl], tolerance: tol,
          ...(tm ? { ...tm, wallGflops: r4(flops / tm.wallMedianMs / 1e6), ...(tm.gpuMedianMs ? { gflops: r4(flops / tm.gpuMedianMs / 1e6) } : {}) } : {}),
        });
      }
      for (const x of theirs) x.dispose();
      ours.destroy();
    }
    timer?.destroy();
  }

  // ---- ratios (time(peer) / time(ours): above 1, ours is faster) ----------------------------
  const ratios: Record<string, number> = {};
  const so = steps.get('ours')!.wallMedianMs;
  for (const i of impls) ratios[`step_vs_${i.replace('-', '_')}`] = speedup(so, steps.get(i)!.wallMedianMs);
  // Over the fastest repetitions: load from other processes only ever adds time.
  for (const i of impls) ratios[`step_vs_${i.replace('-', '_')}_min`] = speedup(steps.get('ours')!.wallMinMs, steps.get(i)!.wallMinMs);
  for (const i of impls) {
    const key = `matmul_vs_${i.replace('-', '_')}`;
    const g = Object.values(per[i].gpu), w = Object.values(per[i].wall), bw = Object.values(per[i].batched);
    if (w.length) ratios[`${key}_wallclock`] = geomean(w);
    if (bw.length) ratios[`${key}_batched_wallclock`] = geomean(bw);
    if (g.length === w.length && g.length) ratios[`${key}_gpu_time`] = geomean(g);
    // The headline: GPU time against tfjs-webgpu (bench/kernels.json's figure); against WebGL
    // (no timer queries here, and where present they time GL commands differently from WebGPU
    // timestamps) the wall clock per product of a batch of products: the kernels' throughput, with
    // each backend's per-wait latency (Chromium's WebGPU completion callback ~1.3 ms, a WebGL
    // readPixels less) paid once per batch as in a model, not once per product.
    const primary = i === 'tfjs-webgpu' && g.length === w.length ? ratios[`${key}_gpu_time`] : (ratios[`${key}_batched_wallclock`] ?? ratios[`${key}_wallclock`]);
    if (primary !== undefined) ratios[key] = primary;
    for (const [id, r] of Object.entries(per[i].wall)) ratios[`matmul_${id}_vs_${i.replace('-', '_')}_wallclock`] = r;
    for (const [id, r] of Object.entries(per[i].gpu)) ratios[`matmul_${id}_vs_${i.replace('-', '_')}_gpu_time`] = r;
    for (const [id, r] of Object.entries(per[i].batched)) ratios[`matmul_${id}_vs_${i.replace('-', '_')}_batched_wallclock`] = r;
  }
  table('Ratios: time(peer) / time(ours), above 1 = ours faster', ['ratio', 'value'], Object.entries(ratios).filter(([k]) => !/^matmul_(nt|nn|tn)_/.test(k)).map(([k, v]) => [k, v]));
  const errors = gpu.takeUncapturedErrors();
  const seconds = r4((performance.now() - t0) / 1000);
  status(`done in ${seconds} s`);
  const result = {
    ok: true,
    adapter: gpu.adapter.description,
    adapterKind: gpu.adapter.kind,
    adapterInfo: { vendor: gpu.adapter.vendor, architecture: gpu.adapter.architecture, device: gpu.adapter.device, timestampQuery: gpu.hasTimestamps, features: [...gpu.device.features].sort() },
    gl,
    userAgent: navigator.userAgent,
    settings: { ...S, visible: V, patches: L },
    tuning: S.tune ? tuning : 'off (tune=0): the static variant guess',
    ratios,
    targets: targetReport(ratios),
    checks: { firstStepLoss: { ...losses, relDiff, agree: lossesAgree, tolerance: 'relative 1e-3' }, matmulFailures, uncapturedGpuErrors: errors },
    step: { figures: stepFigures, firstStepMs: firstMs },
    matmul: matmulFigures,
    seconds,
    log: lines,
  };
  gpu.destroy();
  return result;
}

run().then(
  (r) => {
    window.__benchResult = r;
  },
  (e: unknown) => {
    const message = e instanceof Error ? e.message : String(e);
    log(`failed: ${message}`);
    status(`failed: ${message}`);
    window.__benchResult = { ok: false, error: message, stack: e instanceof Error ? e.stack : undefined, log: lines };
  },
);
