/**
 * The `train` command end to end at a tiny size: a MAE run writes its config, metrics, pictures
 * and parameters; a DMAE run reads that run as its teacher; impossible runs are refused with a
 * message before any training.
 */
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { trainCommand } from '../../src/cli/train';
import { decodeParams } from '../../src/engine/params-file';

const quiet = async <T>(f: () => Promise<T>): Promise<T> => {
  const write = process.stdout.write.bind(process.stdout);
  process.stdout.write = (() => true) as typeof process.stdout.write;
  try {
    return await f();
  } finally {
    process.stdout.write = write;
  }
};

const lines = (path: string) => readFileSync(path, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);

describe('npm run dmae -- train', () => {
  const dir = mkdtempSync(join(tmpdir(), 'dmae-cli-'));
  const teacher = join(dir, 'teacher');
  const tiny = ['--dataset', 'procedural', '--img-size', '16', '--channels', '1', '--batch', '4', '--lr', '1e-3', '--seed', '3'];

  it('MAE: config.json, one metrics line per step, recon PNGs at 0, every N and the end, params.bin + params.json', async () => {
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
    const file = decodeParams(JSON.parse(readFileSync(join(teacher, 'params.json'), 'utf8')), readFileSync(join(teacher, 'params.bin')));
    expect(file.meta.step).toBe(5);
    expect(file.meta.config.embedDim).toBe(48);
    expect(file.params.get('blocks.2.mlp.fc2.weight')!.length).toBe(48 * 192);
  });

  it('DMAE from that run as --teacher: the distillation loss is logged', async () => {
    const out = join(dir, 'student');
    const code = await quiet(() => trainCommand([...tiny, '--mode', 'dmae', '--teacher', teacher, '--steps', '3', '--recon-every', '3', '--out', out]));
    expect(code).toBe(0);
    const m = lines(join(out, 'metrics.jsonl')).filter((x) => 'loss' in x);
    expect(m).toHaveLength(3);
    expect((m[0].distill as number[])[0]).toBeGreaterThan(0);
    expect(existsSync(join(out, 'params.bin'))).toBe(true);
    const meta = JSON.parse(readFileSync(join(out, 'params.json'), 'utf8'));
    expect(meta.tensors.some((t: { name: string }) => t.name === 'aligned_feature_projection_heads.0.weight')).toBe(true);
  });

  it('refuses what it cannot run, with a message', async () => {
    await expect(quiet(() => trainCommand([...tiny, '--mode', 'dmae', '--steps', '2']))).rejects.toThrow(/needs --teacher/);
    await expect(quiet(() => trainCommand([...tiny, '--steps', '2', '--max-memory', '0.01']))).rejects.toThrow(/over --max-memory/);
    await expect(quiet(() => trainCommand([...tiny, '--steps', '2', '--mask-ratio', '1.5']))).rejects.toThrow(/mask ratio/);
    await expect(quiet(() => trainCommand(['--preset', 'vit-large', '--img-size', '224', '--patch', '16', '--channels', '3', '--batch', '4096', '--steps', '1'])))
      .rejects.toThrow(/cannot run this configuration|limit/i);
  });
});
