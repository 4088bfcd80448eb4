/** The train command's checkpoint helpers: stop boundaries, saving every N steps, resuming from the file. */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { RunCheckpointer, nextStop, readResume } from '../../src/cli/checkpoints';
import { maeConfig } from '../../src/engine/config';
import { Trainer, type StepMetrics } from '../../src/engine/trainer';
import { DataLoader } from '../../src/data/loader';
import { makeShapesDataset } from '../../src/data/procedural';
import { resumeTrainer } from '../../src/io/checkpoint';
import { expectSameBits, testGpu } from '../helpers';

describe('train command checkpoints', () => {
  it('nextStop: the nearest of the picture, checkpoint and end boundaries', () => {
    expect(nextStop(0, 10, 4, 3)).toBe(3);
    expect(nextStop(3, 10, 4, 3)).toBe(4);
    expect(nextStop(8, 10, 4, 3)).toBe(9);
    expect(nextStop(9, 10, 4, null)).toBe(10);
    expect(nextStop(0, 10)).toBe(10);
  });

  it('saves every N steps into the run folder; --resume from it continues bit for bit', async () => {
    const gpu = await testGpu();
    const dir = mkdtempSync(join(tmpdir(), 'dmae-ck-'));
    const cfg = maeConfig('test', { imgSize: 16, patchSize: 4, inChans: 1 });
    const shapes = makeShapesDataset({ n: 60, size: 16, channels: 1, seed: 1 });
    const c = { mode: 'mae' as const, model: cfg, batch: 4, lr: 1e-3, warmupSteps: 1, totalSteps: 5, seed: 9 };
    const loader = (seed: number) => new DataLoader(shapes, { split: 'train', batchSize: 4, seed });
    const losses = (m: StepMetrics[]) => Float32Array.from(m.map((x) => x.loss));

    const whole = new Trainer(gpu, c, loader(9));
    const all: StepMetrics[] = [];
    await whole.train({ onMetrics: (m) => void all.push(m) });
    whole.destroy();

    const t = new Trainer(gpu, c, loader(9));
    const ck = new RunCheckpointer(dir, 2, { name: 'shapes', mean: [0.5], std: [0.5] });
    const saved: (string | null)[] = [];
    while (t.step < 3) {
      await t.train({ until: nextStop(t.step, 3, 2) });
      saved.push(await ck.maybeSave(t));
    }
    expect(saved).toEqual([ck.path, null]); // step 2 saved, step 3 not a multiple of 2
    expect(await ck.save(t)).toBe(ck.path); // "Ctrl-C" at step 3
    expect(await ck.save(t)).toBeNull(); // once per step
    t.destroy();

    const r = readResume(dir);
    expect(r.checkpoint.meta.trainer.step).toBe(3);
    expect(readFileSync(ck.path).byteLength).toBeGreaterThan(0);
    const resumed = resumeTrainer(gpu, r.checkpoint, loader(1));
    const rest: StepMetrics[] = [];
    await resumed.train({ onMetrics: (m) => void rest.push(m) });
    expectSameBits(losses(rest), losses(all.slice(3)), 'losses of steps 4–5 after --resume');
    resumed.destroy();
  });
});
