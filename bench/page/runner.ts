/**
 * `npm run bench -- peer --browser`: builds the peer page (bench/page/, its own Vite config),
 * serves the build with `vite preview`, opens it in Debian's chromium with the end-to-end tests'
 * flags (e2e/chromium.ts: WebGPU on; here both WebGPU and WebGL run on SwiftShader), forwards the
 * page's log, waits for `window.__benchResult`, and writes it with the browser, adapter, GL
 * renderer, date and command line → bench/results/peer-chromium.json.
 */
import { fileURLToPath } from 'node:url';
import { CHROMIUM, QUIET_FLAGS, WEBGPU_FLAGS } from '../../e2e/chromium';
import { commandLine, round, writeResults } from '../lib';

export interface BrowserPeerOptions {
  /** Page settings; undefined leaves the page's defaults (bench/page/main.ts SETTINGS). */
  batch?: number;
  maskRatio?: number;
  reps?: number;
  warmup?: number;
  matmulBatch?: number;
  matmulReps?: number;
  matmulCalls?: number;
  webgl?: boolean;
  tune?: boolean;
  /** Give up after this long (the page's whole run). */
  timeoutS: number;
  out: string;
}

export async function runPeerBrowser(opts: BrowserPeerOptions): Promise<void> {
  const started = new Date();
  const t0 = performance.now();
  const configFile = fileURLToPath(new URL('./vite.config.ts', import.meta.url));
  const { build, preview } = await import('vite');
  console.log('building bench/page …');
  await build({ configFile, logLevel: 'warn' });
  const server = await preview({ configFile, logLevel: 'warn' });
  const base = server.resolvedUrls?.local[0];
  if (!base) throw new Error('vite preview did not report a URL');
  const params = new URLSearchParams();
  const set = (k: string, v: number | boolean | undefined): void => {
    if (v !== undefined) params.set(k, typeof v === 'boolean' ? (v ? '1' : '0') : String(v));
  };
  set('batch', opts.batch);
  set('mask', opts.maskRatio);
  set('reps', opts.reps);
  set('warmup', opts.warmup);
  set('matmulBatch', opts.matmulBatch);
  set('matmulReps', opts.matmulReps);
  set('matmulCalls', opts.matmulCalls);
  set('webgl', opts.webgl);
  set('tune', opts.tune);
  const url = `${base}bench/page/index.html?${params}`;

  const { chromium } = await import('playwright-core');
  const args = [...QUIET_FLAGS, ...WEBGPU_FLAGS];
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args });
  try {
    const page = await browser.newPage();
    page.on('console', (m) => console.log(`[page] ${m.text()}`));
    page.on('pageerror', (e) => console.error(`[page error] ${e.message}`));
    console.log(`opening ${url} in ${CHROMIUM} (${browser.version()})`);
    await page.goto(url);
    await page.waitForFunction(() => window.__benchResult !== undefined, undefined, { timeout: opts.timeoutS * 1000, polling: 1000 });
    const result = (await page.evaluate(() => window.__benchResult)) as { ok: boolean; error?: string; adapter?: string; adapterKind?: string; gl?: unknown; ratios?: unknown };
    if (!result.ok) throw new Error(`the page failed: ${result.error}`);
    const body = {
      adapter: result.adapter,
      adapterKind: result.adapterKind,
      glRenderer: (result.gl as { renderer?: string } | null)?.renderer ?? null,
      browser: `Chromium ${browser.version()} (${CHROMIUM}), headless`,
      browserFlags: args,
      command: commandLine(),
      date: started.toISOString(),
      url,
      timing: {
        statistic: 'median',
        step: 'wall clock of each repetition: from the call that records/enqueues the whole step to the backend finishing it (ours and tfjs-webgpu: queue.onSubmittedWorkDone, tfjs\'s batched pass submitted first; tfjs-webgl: a blocking one-pixel readPixels from a private framebuffer (ANGLE finishes the queue first; a fence polled task by task kept a CPU core busy that SwiftShader needs)); readbacks outside; contenders interleaved, warm-up rounds first, after one untimed checked step each; ours also gpuMedianMs: its whole submission between two timestamps, from as many repetitions of its own after the interleaved ones',
        matmul: 'per shape, ours / tfjs-webgpu / tfjs-webgl interleaved (1 warm-up round); wall clock = call to finish, as for the step, from repetitions without timestamps; GPU time from as many timestamped repetitions after them: our timestamp pass, tf.time kernelMs (WebGPU timestamps; WebGL only with EXT_disjoint_timer_query_webgl2); batchedMsPerCall from a third interleaved set of repetitions (after the page\'s warmup rounds), each matmulCalls products recorded/enqueued back to back, then one wait, divided by matmulCalls',
        reduced: 'SwiftShader runs on the CPU: the page defaults to batch 2 for the step (Node: 8) and batch 8 for the matmul shapes (kernels.json: 64), 3 repetitions; ratios between contenders of one run are what to read',
      },
      ratiosNote:
        'time(peer) / time(ours): above 1 means ours is faster. step_vs_* over wall-clock medians. matmul_vs_tfjs_webgpu = geometric mean over the shapes of the GPU-time ratios (WebGPU timestamps, quantised by Chromium), matmul_vs_tfjs_webgl = of the batched wall-clock ratios (per product, matmulCalls products per wait: the throughput a model sees, without one completion wait per product); _gpu_time, _wallclock (one product per wait) and _batched_wallclock variants are all given where measured',
      ...result,
      seconds: round((performance.now() - t0) / 1000, 3),
    };
    delete (body as { ok?: boolean }).ok;
    const path = writeResults(opts.out, body);
    console.log(`ratios ${JSON.stringify(result.ratios)}`);
    console.log(`wrote ${path} in ${body.seconds} s`);
  } finally {
    await browser.close();
    await new Promise<void>((resolve) => server.httpServer.close(() => resolve()));
  }
}
