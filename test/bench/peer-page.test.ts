/**
 * The Chromium peer page (bench/page/, `npm run bench -- peer --browser`) end to end at the
 * smallest sizes: built, served, run in Debian's chromium with WebGPU and WebGL on SwiftShader.
 * Nothing here is timed against anything; it checks that every contender ran, agreed with the
 * others and with float64, and left a figure (the page once failed at its first timing unseen).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runPeerBrowser } from '../../bench/page/runner';

interface Figure { impl: string; wallMedianMs: number; gpuMedianMs?: number; batchedMsPerCall?: number; verified?: boolean }

describe('bench peer --browser', () => {
  const dir = mkdtempSync(join(tmpdir(), 'peer-page-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('runs ours, tfjs-webgpu and tfjs-webgl: the same first-step loss, every matmul verified and timed', async () => {
    const out = join(dir, 'peer');
    await runPeerBrowser({ batch: 1, reps: 1, warmup: 0, matmulBatch: 1, matmulReps: 1, matmulCalls: 2, tune: false, timeoutS: 280, out });
    const r = JSON.parse(readFileSync(`${out}.json`, 'utf8'));
    expect(r.checks.firstStepLoss.agree, JSON.stringify(r.checks.firstStepLoss)).toBe(true);
    expect(r.checks.matmulFailures).toBe(0);
    expect(r.checks.uncapturedGpuErrors).toEqual([]);
    const impls = ['ours', 'tfjs-webgpu', 'tfjs-webgl'];
    expect((r.step.figures as Figure[]).map((f) => f.impl)).toEqual(impls);
    for (const f of r.step.figures as Figure[]) expect(f.wallMedianMs, f.impl).toBeGreaterThan(0);
    const ours = (r.step.figures as Figure[])[0];
    // Our step also has its GPU time (its whole submission between two timestamps).
    if (r.adapterInfo?.timestampQuery) expect(ours.gpuMedianMs, JSON.stringify(ours)).toBeGreaterThan(0);
    const matmuls = r.matmul as Figure[];
    expect(matmuls.length).toBeGreaterThan(0);
    expect(new Set(matmuls.map((f) => f.impl))).toEqual(new Set(impls));
    for (const f of matmuls) {
      expect(f.verified, JSON.stringify(f)).toBe(true);
      expect(f.wallMedianMs, JSON.stringify(f)).toBeGreaterThan(0);
      expect(f.batchedMsPerCall, JSON.stringify(f)).toBeGreaterThan(0);
      if (f.impl === 'ours' && r.adapterInfo?.timestampQuery) expect(f.gpuMedianMs, JSON.stringify(f)).toBeGreaterThan(0);
    }
    for (const key of ['step_vs_tfjs_webgpu', 'step_vs_tfjs_webgl', 'matmul_vs_tfjs_webgpu', 'matmul_vs_tfjs_webgl', 'matmul_vs_tfjs_webgl_batched_wallclock']) expect(r.ratios[key], key).toBeGreaterThan(0);
  }, 300_000);
});
