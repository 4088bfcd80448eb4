/**
 * The `evaluate` command end to end at a tiny size: k-NN, linear probe and fine-tuning of a run's
 * encoder (a run folder holding model.safetensors, as the train command writes it) on generated
 * shapes write accuracy, per-class accuracy and the confusion matrix as JSON.
 */
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MODEL_FILE } from '../../src/cli/checkpoints';
import { FINETUNED_FILE, evaluateCommand } from '../../src/cli/evaluate';
import { maeConfig } from '../../src/engine/config';
import { initParams } from '../../src/engine/init';
import { encodeParams } from '../../src/engine/params-file';
import { maeParamLayout } from '../../src/engine/params';
import { exportFull } from '../../src/io/export';
import { readSafetensors } from '../../src/io/safetensors';
import { quiet } from '../helpers';

describe('npm run dmae -- evaluate', () => {
  const dir = mkdtempSync(join(tmpdir(), 'dmae-eval-'));
  const cfg = maeConfig('test', { imgSize: 8, patchSize: 4, inChans: 1 }, { embedDim: 16, depth: 1, numHeads: 2 });
  const layout = maeParamLayout(cfg);
  const params = initParams(layout, 2, 1);
  writeFileSync(join(dir, MODEL_FILE), exportFull({ mode: 'mae', config: cfg, step: 3 }, params).file);

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

  it('reads a .safetensors file, and an older run folder of params.json + params.bin, alike', { timeout: 120_000 }, async () => {
    const old = join(dir, 'old');
    mkdirSync(old);
    const f = encodeParams(layout, params, { mode: 'mae', config: cfg, step: 3 });
    writeFileSync(join(old, 'params.bin'), f.bin);
    writeFileSync(join(old, 'params.json'), JSON.stringify(f.json));
    const runs = [join(dir, MODEL_FILE), old];
    const results = [];
    for (const [i, run] of runs.entries()) {
      const out = join(dir, `knn-${i}.json`);
      expect(await quiet(() => evaluateCommand([run, '--method', 'knn', '--data', 'procedural', '--batch', '64', '--out', out]))).toBe(0);
      results.push(JSON.parse(readFileSync(out, 'utf8')));
    }
    expect(results[0].runStep).toBe(3);
    expect(results[1].runStep).toBe(3);
    expect(results[1].confusion).toEqual(results[0].confusion); // the same weights (float32 both ways)
  });

  it('finetune --save writes the fine-tuned model as safetensors with fc_norm and head', { timeout: 120_000 }, async () => {
    const save = join(dir, 'ft');
    const code = await quiet(() => evaluateCommand([dir, '--method', 'finetune', '--data', 'procedural', '--steps', '2', '--batch', '8', '--out', join(dir, 'ft.json'), '--save', save]));
    expect(code).toBe(0);
    const st = readSafetensors(new Uint8Array(readFileSync(join(save, FINETUNED_FILE))));
    const t = st.tensors;
    expect(t.get('head.weight')!.shape).toEqual([7, 16]);
    expect(t.get('head.bias')!.shape).toEqual([7]);
    expect(t.get('fc_norm.weight')!.shape).toEqual([16]);
    expect(t.get('blocks.0.attn.qkv.weight')!.dtype).toBe('F32');
    expect(t.has('norm.weight')).toBe(false);
    expect(JSON.parse(st.metadata.dmae_studio_finetuned).classes).toHaveLength(7);
  });

  it('refuses a folder without a model, and an unknown method, with a message', async () => {
    await expect(evaluateCommand([tmpdir(), '--method', 'knn'])).rejects.toThrow(/no model.safetensors or checkpoint.safetensors/);
    await expect(evaluateCommand([dir, '--method', 'svm'])).rejects.toThrow(/knn, linprobe or finetune/);
  });
});
