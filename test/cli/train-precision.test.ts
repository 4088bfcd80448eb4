/**
 * `train --precision`: a mixed-precision run (lavapipe has shader-f16) says so in its optim line,
 * shows the loss scale and the skipped steps in its progress and summary, logs them in
 * metrics.jsonl and keeps the loss scaler's state in its checkpoint; a bad value, and mixed on an
 * adapter without shader-f16, are refused with a message saying what to use.
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { trainCommand } from '../../src/cli/train';
import type { Gpu } from '../../src/gpu/device';
import { decodeCheckpoint } from '../../src/io/checkpoint';
import { quiet } from '../helpers';

// The same device, seen as one without shader-f16 while `noF16.on` (the CLI acquires its own GPU).
const noF16 = vi.hoisted(() => ({ on: false }));
vi.mock('../../src/gpu/node-device', async (importActual) => {
  const actual = await importActual<typeof import('../../src/gpu/node-device')>();
  return {
    ...actual,
    acquireNodeGpu: async (...args: Parameters<typeof actual.acquireNodeGpu>): Promise<Gpu> => {
      const gpu = await actual.acquireNodeGpu(...args);
      return noF16.on ? (Object.create(gpu, { hasF16: { value: false } }) as Gpu) : gpu;
    },
  };
});

const lines = (path: string) => readFileSync(path, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);

/** Runs the command, returning its exit code and its stdout lines. */
async function train(args: string[]): Promise<{ code: number; out: string[] }> {
  const out: string[] = [];
  const code = await quiet(() => trainCommand(args), (l) => l && out.push(l));
  return { code, out };
}

describe('npm run dmae -- train --precision', () => {
  const dir = mkdtempSync(join(tmpdir(), 'dmae-precision-'));
  const tiny = ['--dataset', 'procedural', '--img-size', '16', '--channels', '1', '--embed-dim', '32', '--depth', '1', '--heads', '2',
    '--decoder-dim', '32', '--decoder-depth', '1', '--decoder-heads', '2', '--batch', '4', '--lr', '1e-3', '--seed', '3', '--steps', '3', '--recon-every', '3'];

  it('mixed: the optim line names it, every progress line and the summary show the loss scale and the skipped steps; the checkpoint keeps the scaler', async () => {
    const out = join(dir, 'mixed');
    const r = await train([...tiny, '--precision', 'mixed', '--out', out]);
    expect(r.code).toBe(0);
    expect(r.out.find((l) => l.startsWith('optim'))).toMatch(/, precision mixed \(f16 matmuls, loss scaling\)$/);
    const progress = r.out.filter((l) => /^step \d\/3/.test(l));
    expect(progress).toHaveLength(3); // not a TTY, 3 steps: every one
    for (const l of progress) expect(l).toMatch(/ \|g\| \S+ {2}scale \d+(\.\d+)? {2}skipped \d+ {2}/);
    expect(r.out.find((l) => l.startsWith('summary'))).toMatch(/; loss scale \d+(\.\d+)?, \d+ steps? skipped$/);

    const m = lines(join(out, 'metrics.jsonl')).filter((x) => 'loss' in x);
    expect(m.map((x) => x.step)).toEqual([1, 2, 3]);
    for (const x of m) {
      expect(x.lossScale).toBeGreaterThan(0);
      expect(typeof x.skipped).toBe('boolean');
    }
    const skippedInLog = m.filter((x) => x.skipped).length;
    expect(progress[2]).toContain(`scale ${m[2].lossScale}  skipped ${skippedInLog}  `);
    expect(JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')).config.precision).toBe('mixed');
    const ck = decodeCheckpoint(new Uint8Array(readFileSync(join(out, 'checkpoint.safetensors'))));
    expect(ck.meta.config.precision).toBe('mixed');
    expect(ck.meta.trainer.lossScale).toEqual({ scale: m[2].lossScale, goodSteps: expect.any(Number), skippedSteps: skippedInLog });
  });

  it('f32 (the default): the optim line says so and the progress has no loss scale', async () => {
    const r = await train([...tiny, '--steps', '1', '--recon-every', '1', '--out', join(dir, 'f32')]);
    expect(r.code).toBe(0);
    expect(r.out.find((l) => l.startsWith('optim'))).toMatch(/, precision f32$/);
    const step = r.out.find((l) => l.startsWith('step 1/1'))!;
    expect(step).not.toContain('scale');
    expect(lines(join(dir, 'f32', 'metrics.jsonl')).find((x) => 'loss' in x)).not.toHaveProperty('lossScale');
  });

  it('refuses a value other than f32 or mixed, and mixed on an adapter without shader-f16, saying what to use', async () => {
    await expect(train([...tiny, '--precision', 'f16', '--out', join(dir, 'bad')])).rejects.toThrow('--precision f16 must be f32 or mixed.');
    noF16.on = true;
    try {
      await expect(train([...tiny, '--precision', 'mixed', '--out', join(dir, 'no-f16')])).rejects.toThrow(/^--precision mixed needs the adapter's shader-f16 feature; .+ lacks it\. Train with --precision f32\.$/);
      expect((await train([...tiny, '--steps', '1', '--recon-every', '1', '--out', join(dir, 'no-f16-f32')])).code, 'f32 needs no shader-f16').toBe(0);
    } finally {
      noF16.on = false;
    }
  });
});
