/**
 * `--teacher PATH` of the train command: a DMAE teacher from
 *   - a .safetensors file: reference or timm names (a config.json beside it may give the heads),
 *     a full model export (model.safetensors), or a checkpoint (checkpoint.safetensors: its
 *     model.* tensors; optimizer.* and teacher.* are ignored);
 *   - a fine-tuned classifier (evaluate --method finetune --save DIR: finetuned.safetensors, or
 *     a kd student's model.safetensors): its blocks; fc_norm and head are dropped, and the final
 *     norm it lacks gets a stand-in (weight 1, bias 0; DMAE's features are raw block outputs);
 *   - a run folder: its model.safetensors, else its checkpoint.safetensors, else (runs written
 *     before safetensors) its params.json + params.bin, else a finetuned.safetensors.
 * Only the encoder is kept (the decoder and projection heads, if present, are checked and dropped).
 */
import { closeSync, existsSync, openSync, readFileSync, readSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { MaeConfig } from '../engine/config';
import type { ParamMap } from '../engine/init';
import { decodeParams } from '../engine/params-file';
import { finetunedEncoder, importFinetuned, isFinetunedHeader, type FinetunedModel } from '../io/finetuned';
import { MAX_HEADER_BYTES } from '../io/safetensors';
import { CHECKPOINT_FILE, MODEL_FILE } from './checkpoints';
import { readTeacherSafetensors } from './export';

export interface TeacherSource {
  config: MaeConfig;
  params: ParamMap;
  /** Optimiser steps the teacher had seen (0 when the file does not say). */
  step: number;
  /** The file read. */
  file: string;
  /** What the import inferred (heads' source, prefixes removed, …). */
  notes: string[];
}

export function readTeacher(path: string): TeacherSource {
  if (!existsSync(path)) throw new Error(`--teacher ${path}: no such file or folder.`);
  if (!statSync(path).isDirectory()) {
    if (isFinetunedFile(path)) return teacherFromFinetuned(path);
    const r = readTeacherSafetensors(path);
    return { config: r.config, params: r.params, step: r.step, file: path, notes: r.report.notes };
  }
  for (const name of [MODEL_FILE, CHECKPOINT_FILE]) {
    const file = join(path, name);
    if (existsSync(file)) return readTeacher(file);
  }
  // A run folder of an older version of the train command.
  const jsonPath = join(path, 'params.json'), binPath = join(path, 'params.bin');
  if (existsSync(jsonPath) && existsSync(binPath)) {
    const { meta, params } = decodeParams(JSON.parse(readFileSync(jsonPath, 'utf8')), new Uint8Array(readFileSync(binPath)), jsonPath);
    return { config: meta.config, params, step: meta.step, file: binPath, notes: [] };
  }
  if (existsSync(join(path, FINETUNED_FILE))) return teacherFromFinetuned(join(path, FINETUNED_FILE));
  throw new Error(`--teacher ${path}: no ${MODEL_FILE}, ${CHECKPOINT_FILE} or params.json + params.bin there (train the teacher first: npm run dmae -- train --mode mae --out ${path}).`);
}

/** What `evaluate --method finetune --save DIR` writes in DIR. */
export const FINETUNED_FILE = 'finetuned.safetensors';

/**
 * A fine-tuned classifier from a file (finetuned.safetensors, a kd student's model.safetensors,
 * a timm-named fine-tuned ViT with fc_norm) or a folder holding finetuned.safetensors (else a
 * model.safetensors). A config.json beside the file may name the heads.
 */
export function readFinetuned(path: string): FinetunedModel & { file: string } {
  if (!existsSync(path)) throw new Error(`${path}: no such file or folder.`);
  let file = path;
  if (statSync(path).isDirectory()) {
    const found = [FINETUNED_FILE, MODEL_FILE].map((f) => join(path, f)).find((f) => existsSync(f));
    if (!found) throw new Error(`${path}: no ${FINETUNED_FILE} or ${MODEL_FILE} there (write one with npm run dmae -- evaluate RUN --method finetune --save ${path}).`);
    file = found;
  }
  let configJson: unknown;
  const cfgPath = join(dirname(file), 'config.json');
  if (existsSync(cfgPath)) {
    try {
      configJson = JSON.parse(readFileSync(cfgPath, 'utf8'));
    } catch {
      configJson = undefined; // the file's own metadata names the heads; a broken config.json is not needed
    }
  }
  return { ...importFinetuned(new Uint8Array(readFileSync(file)), { file, configJson }), file };
}

/** A fine-tuned classifier's encoder as a DMAE teacher (its blocks; a stand-in final norm). */
function teacherFromFinetuned(file: string): TeacherSource {
  const m = readFinetuned(file);
  const n = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : 0);
  return {
    config: m.config, params: finetunedEncoder(m), step: n(m.meta?.step) + n(m.meta?.steps), file,
    notes: [...m.notes,
      `A fine-tuned classifier (${m.numClasses} classes) as the teacher: its blocks are used, fc_norm and head are dropped. ` +
      'The encoder\'s final norm is absent (fine-tuning replaces it by fc_norm after pooling): norm.weight = 1, norm.bias = 0 stand in. ' +
      'DMAE distils raw block outputs before any norm, so its features are exactly the fine-tuned encoder\'s; only a consumer of the normed output (k-NN, linear probe) would see the stand-in.'],
  };
}

/** Whether a .safetensors file is a fine-tuned classifier, from its header alone (a teacher file may be large). */
export function isFinetunedFile(file: string): boolean {
  const fd = openSync(file, 'r');
  try {
    const head = Buffer.alloc(8);
    if (readSync(fd, head, 0, 8, 0) < 8) return false;
    const len = Number(head.readBigUInt64LE(0));
    if (!(len > 0 && len <= MAX_HEADER_BYTES)) return false; // not safetensors: the full reader says why
    const json = Buffer.alloc(len);
    if (readSync(fd, json, 0, len, 8) < len) return false;
    const header = JSON.parse(json.toString('utf8')) as unknown;
    return typeof header === 'object' && header !== null && isFinetunedHeader(header as Record<string, unknown>);
  } catch {
    return false;
  } finally {
    closeSync(fd);
  }
}
