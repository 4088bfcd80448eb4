/**
 * The `train` command end to end at a tiny size: a MAE run writes its config, metrics, pictures,
 * model.safetensors, checkpoint.safetensors and continue-training.txt; a DMAE run reads that run
 * (or its model.safetensors, or a timm export of it) as its teacher; impossible runs are refused
 * with a message before any training.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { trainCommand } from '../../src/cli/train';
import { addEncoderParams } from '../../src/engine/params';
import { encodeParams } from '../../src/engine/params-file';
import { ArenaLayout } from '../../src/gpu/buffers';
import { exportTimm } from '../../src/io/export';
import { importStudioModel } from '../../src/io/import';
import { decodeCheckpoint } from '../../src/io/checkpoint';
import { quiet } from '../helpers';

const lines = (path: string) => readFileSync(path, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);

describe('npm run dmae -- train', () => {
  const dir = mkdtempSync(join(tmpdir(), 'dmae-cli-'));
  const teacher = join(dir, 'teacher');
  const tiny = ['--dataset', 'procedural', '--img-size', '16', '--channels', '1', '--batch', '4', '--lr', '1e-3', '--seed', '3'];

  it('MAE: config.json, one metrics line per step, recon PNGs at 0, every N and the end, model + checkpoint safetensors', async () => {
    const code = await quiet(() => trainCommand([...tiny, '--embed-dim', '48', '--depth', '3', '--heads', '3', '--steps', '5', '--recon-every', '2', '--out', teacher]));
    expect(code).toBe(0);
    const cfg = JSON.parse(readFileSync(join(teacher, 'config.json'), 'utf8'));
    expect(cfg.config.totalSteps).toBe(5);
    const m = lines(join(teacher, 'metrics.jsonl'));
    expect(m.filter((x) => 'loss' in x).map((x) => x.step)).toEqual([1, 2, 3, 4, 5]);
    const pngs = m.filter((x) => 'png' in x).map((x) => x.png as string);
    expect(pngs.map((p) => p.slice(-9))).toEqual(['00000.png', '00002.png', '00004.png', '00005.png']);
    const meta = await sharp(pngs[0]).metadata();
    expect([meta.format, meta.width]).toEqual(['png', 4 * 16 * 6 + 5 * 2]); // 4 columns of 16 px × 6
    const file = importStudioModel(new Uint8Array(readFileSync(join(teacher, 'model.safetensors'))));
    expect(file.model.step).toBe(5);
    expect(file.model.config.embedDim).toBe(48);
    expect(file.params.get('blocks.2.mlp.fc2.weight')!.length).toBe(48 * 192);
    const ck = decodeCheckpoint(new Uint8Array(readFileSync(join(teacher, 'checkpoint.safetensors'))));
    expect(ck.meta.trainer.step).toBe(5);
    expect(ck.params.get('blocks.2.mlp.fc2.weight')).toEqual(file.params.get('blocks.2.mlp.fc2.weight'));
    expect(readFileSync(join(teacher, 'continue-training.txt'), 'utf8')).toMatch(/torchrun .*main_pretrain\.py/);
    expect(existsSync(join(teacher, 'params.bin'))).toBe(false);
  });

  it('DMAE from that run as --teacher: the distillation loss is logged', async () => {
    const out = join(dir, 'student');
    const code = await quiet(() => trainCommand([...tiny, '--mode', 'dmae', '--teacher', teacher, '--steps', '3', '--recon-every', '3', '--out', out]));
    expect(code).toBe(0);
    const m = lines(join(out, 'metrics.jsonl')).filter((x) => 'loss' in x);
    expect(m).toHaveLength(3);
    expect((m[0].distill as number[])[0]).toBeGreaterThan(0);
    const student = importStudioModel(new Uint8Array(readFileSync(join(out, 'model.safetensors'))));
    expect(student.model.mode).toBe('dmae');
    expect(student.params.has('aligned_feature_projection_heads.0.weight')).toBe(true);
    expect(readFileSync(join(out, 'continue-training.txt'), 'utf8')).toMatch(/main_distill\.py/);
  });

  it('--teacher takes a .safetensors (full export, checkpoint, timm names) or an old params.bin run folder', async () => {
    const { model, params } = importStudioModel(new Uint8Array(readFileSync(join(teacher, 'model.safetensors'))));
    // A timm export in a folder of its own, with timm's config.json (3 heads: not the head-dim-64 rule).
    const timmDir = join(dir, 'timm');
    mkdirSync(timmDir);
    const timm = exportTimm(model, params, { mean: [0.5], std: [0.5] });
    writeFileSync(join(timmDir, 'model.safetensors'), timm.file);
    writeFileSync(join(timmDir, 'config.json'), JSON.stringify(timm.config));
    // A run folder as the train command wrote it before safetensors.
    const oldDir = join(dir, 'old');
    mkdirSync(oldDir);
    const layout = new ArenaLayout();
    addEncoderParams(layout, model.config);
    const old = encodeParams(layout, params, { mode: 'mae', config: model.config, step: 5 });
    writeFileSync(join(oldDir, 'params.bin'), old.bin);
    writeFileSync(join(oldDir, 'params.json'), JSON.stringify(old.json));
    const distLoss = async (t: string, name: string) => {
      const out = join(dir, `student-${name}`);
      expect(await quiet(() => trainCommand([...tiny, '--mode', 'dmae', '--teacher', t, '--steps', '1', '--recon-every', '1', '--out', out]))).toBe(0);
      return (lines(join(out, 'metrics.jsonl')).find((x) => 'loss' in x)!.distill as number[])[0];
    };
    const ref = await distLoss(join(teacher, 'model.safetensors'), 'model');
    expect(await distLoss(join(teacher, 'checkpoint.safetensors'), 'checkpoint')).toBe(ref);
    expect(await distLoss(join(timmDir, 'model.safetensors'), 'timm')).toBe(ref);
    expect(await distLoss(oldDir, 'old')).toBe(ref);
    await expect(quiet(() => trainCommand([...tiny, '--mode', 'dmae', '--teacher', join(dir, 'nowhere'), '--steps', '1']))).rejects.toThrow(/no such file or folder/);
  });

  it('refuses what it cannot run, with a message', async () => {
    await expect(quiet(() => trainCommand([...tiny, '--mode', 'dmae', '--steps', '2']))).rejects.toThrow(/needs --teacher/);
    await expect(quiet(() => trainCommand([...tiny, '--steps', '2', '--max-memory', '0.01']))).rejects.toThrow(/over --max-memory/);
    await expect(quiet(() => trainCommand([...tiny, '--steps', '2', '--mask-ratio', '1.5']))).rejects.toThrow(/mask ratio/);
    // Over the adapter's one-buffer limit: named before a device is opened; where micro-batches
    // fit, the flags that train the same images a step.
    await expect(quiet(() => trainCommand(['--preset', 'vit-large', '--img-size', '224', '--patch', '16', '--channels', '3', '--batch', '4096', '--steps', '1'])))
      .rejects.toThrow(/The run needs one .* buffer \(activations\); this GPU allows at most .* in one buffer\. Use a smaller model or batch/);
    const split = await quiet(() => trainCommand(['--preset', 'vit-tiny', '--dataset', 'mnist', '--batch', '4096', '--steps', '1'])).catch((e: Error) => e.message);
    const [, batch, accum] = /Here: --batch (\d+) --accum (\d+) trains the same 4096 images a step\.$/.exec(String(split)) ?? [];
    expect(Number(batch) * Number(accum), String(split)).toBe(4096);
    expect(Number(accum)).toBeGreaterThan(1);
  });
});
