/**
 * `npm run dmae -- export`: a checkpoint written by a (tiny) run becomes a full safetensors
 * export with its continue-training text, a timm folder, and ONNX files that onnxruntime-web runs.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-web';
import { describe, expect, it } from 'vitest';
import { exportCommand } from '../../src/cli/export';
import { maeConfig, numPatches } from '../../src/engine/config';
import { Trainer } from '../../src/engine/trainer';
import { DataLoader } from '../../src/data/loader';
import { makeShapesDataset } from '../../src/data/procedural';
import { captureCheckpoint } from '../../src/io/checkpoint';
import { importStudioModel, importTeacher } from '../../src/io/import';
import { forwardEncoder } from '../../src/ref/model';
import { randn, testGpu, quiet } from '../helpers';

describe('npm run dmae -- export', () => {
  const dir = mkdtempSync(join(tmpdir(), 'dmae-export-'));
  const cfg = maeConfig('test', { imgSize: 16, patchSize: 4, inChans: 1 });
  const ckPath = join(dir, 'run', 'checkpoint.safetensors');
  let params: Map<string, Float64Array>;

  it('full: model.safetensors + config.json + continue-training.txt; import gives the run\'s tensors', async () => {
    const gpu = await testGpu();
    const shapes = makeShapesDataset({ n: 40, size: 16, channels: 1, seed: 1 });
    const t = new Trainer(gpu, { mode: 'mae', model: cfg, batch: 4, lr: 1e-3, totalSteps: 2, seed: 2 }, new DataLoader(shapes, { split: 'train', batchSize: 4, seed: 2 }));
    await t.train();
    params = await t.readParams();
    const bytes = await captureCheckpoint(t, { name: 'shapes', mean: [0.4], std: [0.3] });
    t.destroy();
    mkdirSync(join(dir, 'run'), { recursive: true });
    writeFileSync(ckPath, bytes);

    expect(await quiet(() => exportCommand([join(dir, 'run'), '--format', 'full', '--out', join(dir, 'full')]))).toBe(0);
    const m = importStudioModel(new Uint8Array(readFileSync(join(dir, 'full', 'model.safetensors'))));
    for (const [n, v] of params) expect(m.params.get(n), n).toEqual(v);
    expect(JSON.parse(readFileSync(join(dir, 'full', 'config.json'), 'utf8'))).toMatchObject({ mode: 'mae', step: 2, mean: [0.4], std: [0.3] });
    expect(readFileSync(join(dir, 'full', 'continue-training.txt'), 'utf8')).toMatch(/torchrun .*main_pretrain\.py/);
  });

  it('timm: the encoder and a timm config.json with the run\'s mean/std', async () => {
    expect(await quiet(() => exportCommand([ckPath, '--format', 'timm', '--out', join(dir, 'timm')]))).toBe(0);
    const config = JSON.parse(readFileSync(join(dir, 'timm', 'config.json'), 'utf8'));
    expect(config.pretrained_cfg).toMatchObject({ mean: [0.4], std: [0.3], input_size: [1, 16, 16] });
    const t = importTeacher(new Uint8Array(readFileSync(join(dir, 'timm', 'model.safetensors'))), { configJson: config });
    expect(t.report.hasDecoder).toBe(false);
    expect(t.params.get('blocks.1.attn.qkv.weight')).toEqual(params.get('blocks.1.attn.qkv.weight'));
  });

  it('onnx: encoder.onnx and mae.onnx; the encoder runs in onnxruntime-web and matches the reference', async () => {
    expect(await quiet(() => exportCommand([ckPath, '--format', 'onnx', '--out', join(dir, 'onnx')]))).toBe(0);
    expect(existsSync(join(dir, 'onnx', 'mae.onnx'))).toBe(true);
    ort.env.wasm.numThreads = 1;
    const s = await ort.InferenceSession.create(new Uint8Array(readFileSync(join(dir, 'onnx', 'encoder.onnx'))), { executionProviders: ['wasm'] });
    const imgs = randn(16 * 16, 4);
    const out = await s.run({ image: new ort.Tensor('float32', Float32Array.from(imgs), [1, 1, 16, 16]) });
    const L = numPatches(cfg);
    const ref = forwardEncoder(params, cfg, imgs, Uint32Array.from({ length: L }, (_, i) => i), 1).latent!;
    const got = out.tokens.data as Float32Array;
    let worst = 0;
    for (let i = 0; i < ref.length; i++) worst = Math.max(worst, Math.abs(got[i] - ref[i]) / (1 + Math.abs(ref[i])));
    expect(worst).toBeLessThan(2e-4);
  });

  it('refuses bad arguments with a message', async () => {
    await expect(exportCommand([ckPath, '--format', 'tflite', '--out', dir])).rejects.toThrow(/--format tflite must be full, timm or onnx/);
    await expect(exportCommand([join(dir, 'nope.safetensors'), '--out', dir])).rejects.toThrow(/no such file/);
    await expect(exportCommand([ckPath])).rejects.toThrow(/--out DIR is needed/);
  });
});
