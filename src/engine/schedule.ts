/**
 * The learning-rate schedule of the recipe (§1 Optimiser), exactly MAE's
 * util/lr_sched.adjust_learning_rate evaluated once per optimiser step:
 *
 *   lr      = base_lr · effective_batch / 256        (main_pretrain.py: args.lr = args.blr · eff_batch_size / 256,
 *                                                     eff_batch_size = batch · accum_iter)
 *   e < w:  lr(e) = lr · e / w                        (linear warmup from 0: the very first step has lr 0)
 *   e ≥ w:  lr(e) = min_lr + (lr − min_lr) · ½ · (1 + cos(π · (e − w) / (E − w)))
 *
 * MAE measures e, w, E in (fractional) epochs and updates at every optimiser step
 * (`data_iter_step / len(data_loader) + epoch`); here they are counted in optimiser steps, which
 * is the same function with e = it, w = warmupSteps, E = totalSteps. `it` is 0-based.
 */

export interface LrSchedule {
  /** Peak learning rate (after scaling). */
  lr: number;
  /** Floor of the cosine (MAE's --min_lr, default 0). */
  minLr: number;
  warmupSteps: number;
  totalSteps: number;
}

/** MAE's default base lr (`--blr 1.5e-4`). */
export const DEFAULT_BASE_LR = 1.5e-4;

/** The absolute lr: `lr` if given, else base_lr · effective batch / 256. */
export function scaledLr(opts: { lr?: number; baseLr?: number; effectiveBatch: number }): number {
  if (opts.lr !== undefined) return opts.lr;
  return ((opts.baseLr ?? DEFAULT_BASE_LR) * opts.effectiveBatch) / 256;
}

/** Throws on a schedule that cannot be followed. */
export function validateSchedule(s: LrSchedule): void {
  const problems: string[] = [];
  if (!(Number.isFinite(s.lr) && s.lr >= 0)) problems.push(`lr ${s.lr} must be a finite number ≥ 0`);
  if (!(Number.isFinite(s.minLr) && s.minLr >= 0)) problems.push(`min lr ${s.minLr} must be a finite number ≥ 0`);
  if (!(Number.isInteger(s.totalSteps) && s.totalSteps >= 1)) problems.push(`total steps ${s.totalSteps} must be a positive integer`);
  if (!(Number.isInteger(s.warmupSteps) && s.warmupSteps >= 0)) problems.push(`warmup steps ${s.warmupSteps} must be an integer ≥ 0`);
  if (problems.length > 0) throw new Error(`Invalid learning-rate schedule: ${problems.join('; ')}.`);
}

/** The lr of optimiser step `it` (0-based). Past totalSteps the cosine keeps going as MAE's would (never needed in a run). */
export function lrAt(it: number, s: LrSchedule): number {
  if (it < s.warmupSteps) return (s.lr * it) / s.warmupSteps;
  const span = s.totalSteps - s.warmupSteps;
  // A run that is all warmup ends at the peak (MAE would divide by zero).
  if (span <= 0) return s.lr;
  return s.minLr + (s.lr - s.minLr) * 0.5 * (1 + Math.cos((Math.PI * (it - s.warmupSteps)) / span));
}
