/**
 * `--teacher PATH` of the train command: a DMAE teacher from
 *   - a .safetensors file: reference or timm names (a config.json beside it may give the heads),
 *     a full model export (model.safetensors), or a checkpoint (checkpoint.safetensors: its
 *     model.* tensors; optimizer.* and teacher.* are ignored);
 *   - a run folder: its model.safetensors, else its checkpoint.safetensors, else (runs written
 *     before safetensors) its params.json + params.bin.
 * Only the encoder is kept (the decoder and projection heads, if present, are checked and dropped).
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { MaeConfig } from '../engine/config';
import type { ParamMap } from '../engine/init';
import { decodeParams } from '../engine/params-file';
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
  throw new Error(`--teacher ${path}: no ${MODEL_FILE}, ${CHECKPOINT_FILE} or params.json + params.bin there (train the teacher first: npm run dmae -- train --mode mae --out ${path}).`);
}
