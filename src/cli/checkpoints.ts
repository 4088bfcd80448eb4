/**
 * Checkpoints for the Node train command: save the complete training state every N steps, on
 * Ctrl-C and at the end (runs/<name>/checkpoint.safetensors, replaced atomically, with beside it
 * model.safetensors, the full export with reference names, and continue-training.txt, the
 * torchrun command that carries the run on in PyTorch), and resume
 * from one (`--resume <checkpoint or run folder>`): the run continues with the checkpoint's
 * configuration, parameters, AdamW moments, masking stream, data position and teacher, so its
 * losses are those of a run never interrupted.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { DmaeModel } from '../engine/dmae';
import type { ParamMap } from '../engine/init';
import { readParamMap } from '../engine/mae';
import type { ResolvedTrainConfig, Trainer } from '../engine/trainer';
import { encodeCheckpoint, restoreCheckpoint, type Checkpoint, type CheckpointMeta } from '../io/checkpoint';
import { continueTrainingText, exportFull } from '../io/export';
import { checkpointPath, loadCheckpointFile, writeFileAtomic } from './export';

export const CHECKPOINT_FILE = 'checkpoint.safetensors';
export const MODEL_FILE = 'model.safetensors';
export const CONTINUE_FILE = 'continue-training.txt';

/** The first step boundary after `step` at which the loop must stop: a picture, a checkpoint or the end. */
export function nextStop(step: number, total: number, ...every: (number | null | undefined)[]): number {
  let stop = total;
  for (const e of every) if (e && e > 0) stop = Math.min(stop, (Math.floor(step / e) + 1) * e);
  return stop;
}

export class RunCheckpointer {
  private lastSaved = -1;

  constructor(readonly dir: string, readonly every: number | null, readonly dataset?: CheckpointMeta['dataset']) {}

  get path(): string {
    return join(this.dir, CHECKPOINT_FILE);
  }

  /** Saves when `trainer.step` is a multiple of `every` (call between train() calls). */
  async maybeSave(trainer: Trainer): Promise<string | null> {
    if (!this.every || trainer.step % this.every !== 0) return null;
    return this.save(trainer);
  }

  /**
   * Saves now (at the end, on Ctrl-C); once per step. Writes model.safetensors and
   * continue-training.txt first and the checkpoint last, so a checkpoint is never older than them.
   */
  async save(trainer: Trainer): Promise<string | null> {
    if (trainer.step === this.lastSaved) return null;
    const m = trainer.model, c = trainer.config, step = trainer.step;
    const [params, adamM, adamV] = await Promise.all([m.params, m.adamM, m.adamV].map((a) => readParamMap(trainer.gpu, a)));
    const teacher = m instanceof DmaeModel ? await m.readTeacher() : null;
    const norm = this.dataset ? { mean: this.dataset.mean, std: this.dataset.std } : undefined;
    writeFileAtomic(join(this.dir, MODEL_FILE), exportFull({ mode: c.mode, config: c.model, teacher: c.teacher, distill: c.distill, step }, params, norm).file);
    writeFileAtomic(join(this.dir, CONTINUE_FILE), continueTrainingText(c, { weightsFile: MODEL_FILE, stepsDone: step }));
    writeFileAtomic(this.path, encodeCheckpoint({ meta: { config: c, trainer: trainer.getState(), dataset: this.dataset }, params, adamM, adamV, teacher }));
    this.lastSaved = step;
    return this.path;
  }
}

/** `--resume PATH`: the checkpoint, checked; its configuration replaces the flags'. */
export function readResume(path: string): { checkpoint: Checkpoint; config: ResolvedTrainConfig; teacher: ParamMap | null } {
  const checkpoint = loadCheckpointFile(path);
  return { checkpoint, config: checkpoint.meta.config, teacher: checkpoint.teacher };
}

/** The run folder a `--resume PATH` (a checkpoint file or a run folder) belongs to. */
export const resumeFolder = (path: string): string => dirname(checkpointPath(path));

/**
 * metrics.jsonl of a resumed run: the lines of steps up to the checkpoint's (a run stopped after
 * its last checkpoint logged steps the resumed run repeats), so that appending continues it.
 * Returns the kept text and the last loss line's elapsedMs (the resumed run's clock starts there).
 */
export function metricsUpTo(path: string, step: number): { text: string; elapsedMs: number } {
  if (!existsSync(path)) return { text: '', elapsedMs: 0 };
  let elapsedMs = 0;
  const kept: string[] = [];
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    if (!line.trim()) continue;
    let j: { step?: unknown; elapsedMs?: unknown };
    try {
      j = JSON.parse(line) as typeof j;
    } catch {
      continue; // a line cut short by a crash
    }
    if (typeof j.step !== 'number' || j.step > step) continue;
    if (typeof j.elapsedMs === 'number') elapsedMs = j.elapsedMs;
    kept.push(line);
  }
  return { text: kept.map((l) => `${l}\n`).join(''), elapsedMs };
}

/** Puts the checkpoint into a Trainer built with its configuration (and its teacher). */
export function applyResume(trainer: Trainer, checkpoint: Checkpoint): void {
  restoreCheckpoint(trainer, checkpoint);
}
