/**
 * `train --resume`: a run stopped by Ctrl-C part way and resumed from its checkpoint logs, in the
 * same metrics.jsonl, the very losses (bit for bit) of the same run never interrupted.
 */
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { trainCommand } from '../../src/cli/train';
import { decodeCheckpoint } from '../../src/io/checkpoint';
import { quiet } from '../helpers';

/** Runs quietly; `onLine` sees each stdout line (the test's Ctrl-C hook). */
type Line = { step: number; loss?: number; pix?: number; lr?: number; gradNorm?: number; val?: unknown };
const lines = (path: string): Line[] => readFileSync(path, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Line);
const losses = (m: Line[]) => m.filter((x) => x.loss !== undefined).map((x) => ({ step: x.step, loss: x.loss, pix: x.pix, lr: x.lr, gradNorm: x.gradNorm }));

describe('npm run dmae -- train --resume', () => {
  const dir = mkdtempSync(join(tmpdir(), 'dmae-resume-'));
  const run = ['--dataset', 'procedural', '--img-size', '16', '--channels', '1', '--preset', 'test',
    '--batch', '4', '--lr', '1e-3', '--warmup', '2', '--seed', '5', '--steps', '6', '--recon-every', '3'];

  it('6 steps at once vs stopped (Ctrl-C) then resumed to 6: identical losses in metrics.jsonl', async () => {
    const whole = join(dir, 'whole');
    expect(await quiet(() => trainCommand([...run, '--out', whole]))).toBe(0);
    const ref = losses(lines(join(whole, 'metrics.jsonl')));
    expect(ref.map((x) => x.step)).toEqual([1, 2, 3, 4, 5, 6]);

    // Ctrl-C once step 2 is logged: the run finishes the steps in flight, saves and exits 130.
    const cut = join(dir, 'cut');
    let sent = false;
    const code = await quiet(() => trainCommand([...run, '--out', cut]), (l) => {
      if (!sent && /^step 2\/6/.test(l)) {
        sent = true;
        process.emit('SIGINT');
      }
    });
    expect(sent).toBe(true);
    expect(code).toBe(130);
    const ck = decodeCheckpoint(new Uint8Array(readFileSync(join(cut, 'checkpoint.safetensors'))));
    const stoppedAt = ck.meta.trainer.step;
    expect(stoppedAt).toBeGreaterThanOrEqual(2);
    expect(stoppedAt).toBeLessThan(6);
    expect(losses(lines(join(cut, 'metrics.jsonl'))).map((x) => x.step)).toEqual(ref.slice(0, stoppedAt).map((x) => x.step));
    expect(existsSync(join(cut, 'model.safetensors'))).toBe(true);
    expect(existsSync(join(cut, 'continue-training.txt'))).toBe(true);

    // Flags that would change the run are refused.
    await expect(quiet(() => trainCommand(['--resume', cut, '--lr', '1e-2']))).rejects.toThrow(/--lr would change it/);

    expect(await quiet(() => trainCommand(['--resume', join(cut, 'checkpoint.safetensors')]))).toBe(0);
    const all = lines(join(cut, 'metrics.jsonl'));
    // Bit-identical: the JSON numbers are the float64 values the trainer logged.
    expect(losses(all)).toEqual(ref);
    // Pictures once each (step 0 only from the first start), and the resume recorded in config.json.
    expect(all.filter((x) => x.val !== undefined).map((x) => x.step)).toEqual([0, 3, 6]);
    const cfg = JSON.parse(readFileSync(join(cut, 'config.json'), 'utf8'));
    expect(cfg.resumes).toHaveLength(1);
    expect(cfg.resumes[0].fromStep).toBe(stoppedAt);
    expect(decodeCheckpoint(new Uint8Array(readFileSync(join(cut, 'checkpoint.safetensors')))).meta.trainer.step).toBe(6);
    // The final parameters are those of the uninterrupted run.
    expect(readFileSync(join(cut, 'model.safetensors')).equals(readFileSync(join(whole, 'model.safetensors')))).toBe(true);
  });
});
