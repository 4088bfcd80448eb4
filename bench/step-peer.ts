/**
 * The TensorFlow.js peers, in the same run on the same adapter as ours.
 *
 * Node (`npm run bench -- peer`): our MAE training step (MaeModel.recordStep, as bench/train.ts)
 * and the same step written with tfjs ops (bench/tfjs-mae.ts) on tfjs-backend-webgpu constructed
 * on OUR GPUDevice (bench/tfjs-peer.ts), timed interleaved (bench/lib.ts timeInterleaved); then
 * every matmul of the step, ours (the engine's default variant) against tf.matMul on that backend.
 * tfjs-backend-webgl needs a WebGL context, which Node does not have: the JSON says so.
 * → bench/results/peer-node.json
 *
 * Chromium (`npm run bench -- peer --browser`): builds bench/page/ with Vite, serves it, opens it
 * in Debian's chromium (WebGPU and WebGL on SwiftShader) with Playwright, waits for the page's
 * `window.__benchResult` (ours vs tfjs-webgpu vs tfjs-webgl, step and matmuls) and writes it with
 * the adapter, GL renderer, date and command → bench/results/peer-chromium.json
 */
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { maeConfig, numPatches } from '../src/engine/config';
import { initParams } from '../src/engine/init';
import { MaeModel } from '../src/engine/mae';
import { maeParamLayout } from '../src/engine/params';
import { summarizeTuning, tuneMatmul, type TuneReport } from '../src/gpu/autotune';
import { tuneKernelsForRecording } from '../src/gpu/autotune-families';
import { Recorder } from '../src/gpu/kernels';
import { lenKeepFor, randomMasking } from '../src/gpu/ops/masking';
import { GpuTimer } from '../src/gpu/timing';
import { commandLine, commonFields, compare, openBench, randn, rng, round, timeInterleaved, writeResults, type Timing } from './lib';
import {
  GEOMETRY, STEP_OPTS, geomean, matmulCases, matmulTol, ourMatmulCase, ourStepContender, speedup, targetReport, tfjsFirstStepLoss,
  tfjsStepContender, tfjsWebgpuBackend, vitLinearShapes,
} from './peer-core';
import { TfjsMae } from './tfjs-mae';
import { PEER_BACKEND, createTfjsPeer } from './tfjs-peer';

export interface PeerOptions {
  batch: number;
  maskRatio: number;
  /** Interleaved wall-clock repetitions of the two steps (after `warmup` untimed rounds). */
  reps: number;
  warmup: number;
  /** Repetitions under GPU timestamps (ours: Σ passes; tfjs: tf.time kernelMs); 0 skips them. */
  kernelReps: number;
  /** Batch whose matmul shapes are timed (64: bench/kernels.ts's shapes); 0 skips the matmuls. */
  matmulBatch: number;
  matmulReps: number;
  /** Tune our matmul variants first, as the studio's trainer does (tuneKernelsForRecording: matmuls, layer norm, attention); false: the static guess. */
  tune: boolean;
  out: string;
}

/** What the JSON keeps of a tuning: the class choices and where they came from. */
const tuningSummary = (r: TuneReport | null) =>
  r && { seconds: round(r.seconds, 3), method: r.method, store: r.store, classes: r.classes.map((c) => ({ key: c.key, chosen: c.chosen, source: c.source })) };

/**
 * tfjs-core's Node entry (dist/tf-core.node.js) registers no gradients, and its ES module
 * `register_all_gradients` cannot be loaded by Node as it is (extension-less imports). Bundle it
 * with esbuild into .cache/ and import the bundle. The engine and the kernel and gradient
 * registries are global (tfjs's getGlobal), so the bundled copy registers into the engine that
 * tfjs-core's Node entry made — which must therefore be loaded first (else the bundle would make
 * the engine, with a Tensor class whose op handler nothing sets).
 */
export async function registerTfjsGradientsNode(): Promise<void> {
  await import('@tensorflow/tfjs-core');
  const { build } = await import('esbuild');
  const file = join(dirname(fileURLToPath(import.meta.url)), '..', '.cache', 'tfjs-register-all-gradients.mjs');
  mkdirSync(dirname(file), { recursive: true });
  await build({ entryPoints: ['@tensorflow/tfjs-core/dist/register_all_gradients.js'], bundle: true, format: 'esm', platform: 'node', outfile: file, logLevel: 'silent' });
  await import(pathToFileURL(file).href);
}

function figure(impl: string, t: Timing, batch?: number) {
  return { impl, ...t, ...(batch ? { imagesPerSecond: round((batch * 1000) / t.medianMs), wallImagesPerSecond: round((batch * 1000) / t.wallMedianMs) } : {}) };
}

export async function runPeer(opts: PeerOptions): Promise<void> {
  const started = new Date();
  const t0 = performance.now();
  const log = (s: string): void => console.log(s);
  const ctx = await openBench({ warmup: opts.warmup, reps: opts.reps });
  const { gpu } = ctx;
  await registerTfjsGradientsNode();
  const peer = await createTfjsPeer(ctx); // tfjs-backend-webgpu on our device, now tfjs's active backend
  const tf = await import('@tensorflow/tfjs-core');
  const backend = tfjsWebgpuBackend(tf, PEER_BACKEND, gpu.device);
  log(`adapter: ${gpu.adapter.description}; tfjs ${peer.version} (${PEER_BACKEND} on our device); batch ${opts.batch}, mask ${opts.maskRatio}`);

  // ---- the whole step -------------------------------------------------------------------------
  const cfg = maeConfig('vit-tiny', GEOMETRY);
  const N = opts.batch, L = numPatches(cfg), V = lenKeepFor(L, opts.maskRatio);
  const params = initParams(maeParamLayout(cfg), GEOMETRY.imgSize / GEOMETRY.patchSize, 1);
  const imgs = Float32Array.from(randn(N * GEOMETRY.inChans * GEOMETRY.imgSize ** 2, 3));
  const noise = rng(4);
  const masking = randomMasking(Float32Array.from({ length: N * L }, () => noise()), N, L, V);
  const ours = new MaeModel(gpu, cfg, N, V);
  ours.uploadParams(params);
  ours.setBatch(imgs, masking);
  // The studio's trainer tunes the matmul variants for its step before the first one (the choice
  // is then fixed for the device); do the same, so that "ours" is what a training run uses.
  const tuning: Record<string, ReturnType<typeof tuningSummary>> = {};
  if (opts.tune) {
    const r = (await tuneKernelsForRecording(gpu, (rec) => ours.recordStep(rec, STEP_OPTS)))?.matmul ?? null;
    tuning.step = tuningSummary(r);
    if (r) log(`tuned the step's matmuls: ${summarizeTuning(r)}`);
  }
  const theirs = new TfjsMae(tf, cfg, N, V, params, { lr: STEP_OPTS.lr });
  theirs.setBatch(imgs, masking);
  // A whole step is ~520 passes: the shared 512-pass timer would silently stop counting.
  const stepTimer = ctx.timer ? new GpuTimer(gpu.device, 2048) : undefined;
  const oursC = ourStepContender(gpu, stepTimer, 'ours', (rec) => ours.recordStep(rec, STEP_OPTS));
  const tfC = tfjsStepContender(tf, backend, theirs, 'tfjs-webgpu');

  // One untimed step each from the same parameters: compiles, and the two losses must agree.
  let ts = performance.now();
  await oursC.timed(false);
  const ourLoss = (await ours.readLosses()).loss;
  const firstOurs = performance.now() - ts;
  ts = performance.now();
  const tfLoss = await tfjsFirstStepLoss(tf, backend, theirs);
  const firstTfjs = performance.now() - ts;
  const lossRelDiff = Math.abs(ourLoss - tfLoss) / Math.abs(ourLoss);
  const lossesAgree = lossRelDiff <= 1e-3;
  log(`first step (compiles): ours ${firstOurs.toFixed(0)} ms, tfjs ${firstTfjs.toFixed(0)} ms; loss ours ${ourLoss.toFixed(6)}, tfjs ${tfLoss.toFixed(6)} (rel diff ${lossRelDiff.toExponential(2)})`);

  const wall = await timeInterleaved({ ...ctx, method: 'wall-clock' }, [oursC, tfC]);
  const wo = wall.get('ours')!, wt = wall.get('tfjs-webgpu')!;
  log(`step wall: ours ${wo.medianMs} ms, tfjs-webgpu ${wt.medianMs} ms → ×${speedup(wo.medianMs, wt.medianMs)}`);
  let kernel: Map<string, Timing> | undefined;
  if (ctx.timer && opts.kernelReps > 0) {
    kernel = await timeInterleaved({ ...ctx, warmup: 0, reps: opts.kernelReps }, [oursC, tfC]);
    log(`step GPU time: ours ${kernel.get('ours')!.medianMs} ms, tfjs-webgpu ${kernel.get('tfjs-webgpu')!.medianMs} ms`);
  }
  ours.destroy();
  theirs.dispose();
  stepTimer?.destroy();

  // ---- the matmuls --------------------------------------------------------------------------
  const matmulFigures: object[] = [];
  const perShape: Record<string, number> = {};
  const perShapeWall: Record<string, number> = {};
  let matmulFailures = 0;
  if (opts.matmulBatch > 0) {
    const cases = matmulCases(vitLinearShapes(cfg, opts.matmulBatch, V));
    log(`matmuls: ${cases.length} products of the step at batch ${opts.matmulBatch}`);
    if (opts.tune) tuning.matmul = tuningSummary(await tuneMatmul(gpu, cases.map(({ layout, M, N: n, K }) => ({ layout, M, N: n, K }))));
    for (const c of cases) {
      const { M, N: Nn, K, layout } = c;
      const ours = ourMatmulCase(gpu, c);
      const { want, variant, record } = ours;
      const oursM = ourStepContender(gpu, ctx.timer, `ours_${c.id}`, record);
      const tfM = peer.matmul(`tfjs-webgpu_${c.id}`, c.a, c.b, M, Nn, K, layout);
      const rec = new Recorder(gpu);
      record(rec);
      await rec.submit();
      const tol = matmulTol(K);
      const vOurs = compare(await ours.result(), want, tol, `ours ${c.id}`);
      const vTf = compare(await tfM.result(), want, tol, `tfjs-webgpu ${c.id}`);
      const flops = 2 * M * Nn * K;
      let t: Map<string, Timing> | undefined;
      if (vOurs.verified && vTf.verified) {
        t = await timeInterleaved({ ...ctx, reps: opts.matmulReps }, [oursM, tfM.contender]);
        const a = t.get(oursM.name)!, b = t.get(tfM.contender.name)!;
        perShape[c.id] = speedup(a.medianMs, b.medianMs);
        perShapeWall[c.id] = speedup(a.wallMedianMs, b.wallMedianMs);
        log(`  ${c.id.padEnd(20)} M=${M} N=${Nn} K=${K}: ours (${variant}) ${a.medianMs} ms, tfjs ${b.medianMs} ms → ×${perShape[c.id]}`);
      } else {
        matmulFailures++;
        log(`  ${c.id}: verification failed (ours ${JSON.stringify(vOurs)}, tfjs ${JSON.stringify(vTf)}); not timed`);
      }
      for (const [impl, v, name] of [['ours', vOurs, oursM.name], ['tfjs-webgpu', vTf, tfM.contender.name]] as const) {
        const tm = t?.get(name);
        matmulFigures.push({
          id: c.id, layer: c.layer, layout, role: c.role, M, N: Nn, K, flops, impl, ...(impl === 'ours' ? { variant } : {}), ...v, tolerance: tol,
          ...(tm ? { ...tm, gflops: round(flops / tm.medianMs / 1e6), wallGflops: round(flops / tm.wallMedianMs / 1e6) } : {}),
        });
      }
      tfM.dispose();
      ours.destroy();
    }
  }

  const ratios: Record<string, number> = {
    step_vs_tfjs_webgpu: speedup(wo.medianMs, wt.medianMs),
    // Over the fastest repetitions: load from other processes only ever adds time.
    step_vs_tfjs_webgpu_min: speedup(wo.minMs, wt.minMs),
  };
  if (kernel) ratios.step_vs_tfjs_webgpu_gpu_time = speedup(kernel.get('ours')!.medianMs, kernel.get('tfjs-webgpu')!.medianMs);
  const shapeRatios = Object.values(perShape);
  if (shapeRatios.length) {
    ratios.matmul_vs_tfjs_webgpu = geomean(shapeRatios);
    ratios.matmul_vs_tfjs_webgpu_wallclock = geomean(Object.values(perShapeWall));
    ratios.matmul_vs_tfjs_webgpu_min = Math.min(...shapeRatios);
    ratios.matmul_vs_tfjs_webgpu_max = Math.max(...shapeRatios);
    for (const [id, r] of Object.entries(perShape)) ratios[`matmul_${id}_vs_tfjs_webgpu`] = r;
  }
  const errors = gpu.takeUncapturedErrors();
  const body = {
    ...(await commonFields(ctx, started)),
    ratiosNote:
      'ratios are time(tfjs) / time(ours) — e.g. step_vs_tfjs_webgpu = tfjs_webgpu_step_ms / our_step_ms — so above 1 means ours is faster (bench/kernels.json\'s convention). ' +
      'step_vs_tfjs_webgpu is over wall-clock medians (each step from its first call to the device finishing its work); step_vs_tfjs_webgpu_gpu_time over GPU-timestamp sums; ' +
      'matmul_vs_tfjs_webgpu is the geometric mean over the shapes of the per-shape GPU-time ratios (timing.method), _wallclock over wall-clock medians',
    peers: {
      'tfjs-webgpu': {
        version: peer.version,
        backend: `@tensorflow/tfjs-backend-webgpu ${peer.version} WebGPUBackend constructed on our GPUDevice, registered as ${PEER_BACKEND} (bench/tfjs-peer.ts)`,
        stepTimedAs: 'wall clock from TfjsMae.step() (tf.variableGrads + AdamW, tfjs batching its submissions as usual) to queue.onSubmittedWorkDone() after tfjs\'s open pass is submitted; loss disposed outside',
        gpuTimedAs: 'tf.time() kernelMs: tfjs gives each program its own pass with timestamps (and its own submission and readback, so those repetitions are only for the GPU figure)',
        matmulTimedAs: peer.timedAs,
      },
      'tfjs-webgl': { measured: false, why: 'tfjs-backend-webgl runs on a WebGL2 context; Node has none. It is measured in Chromium: npm run bench -- peer --browser → bench/results/peer-chromium.json' },
    },
    setup: {
      model: 'vit-tiny', image: `${GEOMETRY.imgSize}×${GEOMETRY.imgSize}×${GEOMETRY.inChans}`, patchSize: GEOMETRY.patchSize, patches: L,
      maskRatio: opts.maskRatio, visible: V, batch: N,
      config: { embedDim: cfg.embedDim, depth: cfg.depth, numHeads: cfg.numHeads, decoderEmbedDim: cfg.decoderEmbedDim, decoderDepth: cfg.decoderDepth, decoderNumHeads: cfg.decoderNumHeads, normPixLoss: cfg.normPixLoss },
      ourStep: `MaeModel.recordStep: forward, backward (assigning the gradients: no zeroing pass), global grad norm, AdamW (lr ${STEP_OPTS.lr}, no clipping): one command buffer, one submit`,
      tfjsStep: 'bench/tfjs-mae.ts TfjsMae.step: the same forward with tf ops (exact-erf GELU via tf.erf), tf.variableGrads, AdamW = decoupled decay written out + tf.train.adam (betas 0.9/0.95, eps 1e-8); no global grad norm',
      weights: 'the recipe initialisation (seeded), identical for both; images seeded noise; the same masking ids for both',
      stepReps: { warmup: opts.warmup, reps: opts.reps, gpuTimeReps: kernel ? opts.kernelReps : 0 },
      matmul: { batch: opts.matmulBatch, visible: V, reps: opts.matmulReps, ourVariant: opts.tune ? 'the engine default after tuning (tuneKernelsForRecording for the step, tuneMatmul for these shapes; choices per shape class, see tuning)' : 'the static guess (--no-tune)', verification: 'each product once vs float64, |got − ref| ≤ 2e-5·√K + 2e-4·|ref|' },
    },
    tuning: opts.tune ? tuning : 'off (--no-tune): the static variant guess of src/gpu/ops/matmul.ts',
    checks: { firstStepLoss: { ours: ourLoss, tfjs_webgpu: tfLoss, relDiff: round(lossRelDiff), agree: lossesAgree, tolerance: 'relative 1e-3' }, matmulFailures, uncapturedGpuErrors: errors },
    step: { figures: [figure('ours', wo, N), figure('tfjs-webgpu', wt, N)], gpuTime: kernel ? [figure('ours', kernel.get('ours')!), figure('tfjs-webgpu', kernel.get('tfjs-webgpu')!)] : null, firstStepMs: { ours: round(firstOurs), tfjs_webgpu: round(firstTfjs) } },
    matmul: matmulFigures,
    ratios,
    targets: { ...targetReport(ratios), note: 'tfjs-webgl targets are measured in Chromium only (peer-chromium.json); these are lavapipe figures when adapterKind is lavapipe, not a browser' },
    summary: { seconds: round((performance.now() - t0) / 1000, 3), command: commandLine() },
  };
  const path = writeResults(opts.out, body);
  log(`ratios ${JSON.stringify(ratios)}`);
  log(`wrote ${path} in ${body.summary.seconds} s`);
  if (errors.length) log(`uncaptured GPU errors: ${errors.join('; ')}`);
  ctx.timer?.destroy();
  gpu.destroy();
  if (errors.length || !lossesAgree || matmulFailures) process.exitCode = 1;
}
