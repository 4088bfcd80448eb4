/**
 * The `evaluate` command end to end at a tiny size: k-NN, linear probe and fine-tuning of a run's
 * encoder on generated shapes write accuracy, per-class accuracy and the confusion matrix as JSON.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { evaluateCommand } from '../../src/cli/evaluate';
import { maeConfig } from '../../src/engine/config';
import { initParams } from '../../src/engine/init';
import { decodeParams, encodeParams } from '../../src/engine/params-file';
import { maeParamLayout } from '../../src/engine/params';

const quiet = async <T>(f: () => Promise<T>): Promise<T> => {
  const write = process.stdout.write.bind(process.stdout);
  process.stdout.write = (() => true) as typeof process.stdout.write;
  try {
    return await f();
  } finally {
    process.stdout.write = write;
  }
};

describe('npm run dmae -- evaluate', () => {
  const dir = mkdtempSync(join(tmpdir(), 'dmae-eval-'));
  const cfg = maeConfig('test', { imgSize: 8, patchSize: 4, inChans: 1 }, { embedDim: 16, depth: 1, numHeads: 2 });
  const layout = maeParamLayout(cfg);
  const file = encodeParams(layout, initParams(layout, 2, 1), { mode: 'mae', config: cfg, step: 0 });
  writeFileSync(join(dir, 'params.bin'), file.bin);
  writeFileSync(join(dir, 'params.json'), JSON.stringify(file.json));

  for (const [method, extra] of [['knn', []], ['linprobe', ['--steps', '20', '--pool', 'mean']], ['finetune', ['--steps', '4', '--batch', '16']]] as const) {
    it(`${method}: JSON with accuracy, per-class accuracy, confusion matrix, options`, { timeout: 120_000 }, async () => {
      const out = join(dir, `eval-${method}.json`);
      const code = await quiet(() => evaluateCommand([dir, '--method', method, '--data', 'procedural', '--batch', '64', ...extra, '--out', out]));
      expect(code).toBe(0);
      const r = JSON.parse(readFileSync(out, 'utf8'));
      expect(r.method).toBe(method);
      expect(r.count).toBe(200); // shapes: 2000 images, 10 % validation
      expect(r.accuracy).toBeGreaterThanOrEqual(0);
      expect(r.accuracy).toBeLessThanOrEqual(1);
      expect(r.classNames).toEqual(['circle', 'square', 'triangle', 'ring', 'cross', 'stripes', 'checker']);
      expect(r.confusion).toHaveLength(7);
      expect(r.confusion.flat().reduce((a: number, b: number) => a + b, 0)).toBe(200);
      const diag = r.confusion.reduce((s: number, row: number[], k: number) => s + row[k], 0);
      expect(diag / 200).toBeCloseTo(r.accuracy, 12);
      expect(r.perClass.map((c: { count: number }) => c.count).reduce((a: number, b: number) => a + b, 0)).toBe(200);
      expect(r.data).toMatchObject({ name: 'Shapes 8×8 gray', C: 1, H: 8, W: 8 });
      expect(r.seconds).toBeGreaterThan(0);
      if (method !== 'knn') expect(r.trainLog.length).toBeGreaterThan(0);
    });
  }

  it('finetune --save-params writes a fine-tuned model that decodes with fc_norm and head', { timeout: 120_000 }, async () => {
    const save = join(dir, 'ft');
    const code = await quiet(() => evaluateCommand([dir, '--method', 'finetune', '--data', 'procedural', '--steps', '2', '--batch', '8', '--out', join(dir, 'ft.json'), '--save-params', save]));
    expect(code).toBe(0);
    const { params } = decodeParams(JSON.parse(readFileSync(join(save, 'params.json'), 'utf8')), new Uint8Array(readFileSync(join(save, 'params.bin'))));
    expect(params.get('head.weight')!.length).toBe(7 * 16);
    expect(params.get('fc_norm.weight')!.length).toBe(16);
    expect(params.has('norm.weight')).toBe(false);
  });

  it('refuses a folder without parameters, and an unknown method, with a message', async () => {
    await expect(evaluateCommand([tmpdir(), '--method', 'knn'])).rejects.toThrow(/no params.json and params.bin/);
    await expect(evaluateCommand([dir, '--method', 'svm'])).rejects.toThrow(/knn, linprobe or finetune/);
  });
});
