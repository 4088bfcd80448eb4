/**
 * Checkpoints for the Node train command: save the complete training state every N steps, on
 * Ctrl-C and at the end (runs/<name>/checkpoint.safetensors, replaced atomically), and resume
 * from one (`--resume <checkpoint or run folder>`): the run continues with the checkpoint's
 * configuration, parameters, AdamW moments, masking stream, data position and teacher, so its
 * losses are those of a run never interrupted.
 */
import { join } from 'node:path';
import type { ParamMap } from '../engine/init';
import type { ResolvedTrainConfig, Trainer } from '../engine/trainer';
import { captureCheckpoint, restoreCheckpoint, type Checkpoint, type CheckpointMeta } from '../io/checkpoint';
import { loadCheckpointFile, writeFileAtomic } from './export';

export const CHECKPOINT_FILE = 'checkpoint.safetensors';

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

  /** Saves now (at the end, on Ctrl-C); once per step. */
  async save(trainer: Trainer): Promise<string | null> {
    if (trainer.step === this.lastSaved) return null;
    writeFileAtomic(this.path, await captureCheckpoint(trainer, this.dataset));
    this.lastSaved = trainer.step;
    return this.path;
  }
}

/** `--resume PATH`: the checkpoint, checked; its configuration replaces the flags'. */
export function readResume(path: string): { checkpoint: Checkpoint; config: ResolvedTrainConfig; teacher: ParamMap | null } {
  const checkpoint = loadCheckpointFile(path);
  return { checkpoint, config: checkpoint.meta.config, teacher: checkpoint.teacher };
}

/** Puts the checkpoint into a Trainer built with its configuration (and its teacher). */
export function applyResume(trainer: Trainer, checkpoint: Checkpoint): void {
  restoreCheckpoint(trainer, checkpoint);
}
