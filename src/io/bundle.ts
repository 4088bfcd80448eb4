/**
 * The files of one export, by format — what the CLI writes into --out and what the studio offers
 * for download (one call, platform-neutral):
 *
 *   full   model.safetensors (reference names), config.json, and with the run's hyperparameters
 *          continue-training.txt (the torchrun command line)
 *   timm   model.safetensors (encoder, timm names), config.json (timm's)
 *   onnx   encoder.onnx (image → tokens, cls), mae.onnx (image, ids_keep, ids_restore → pred, mask)
 */
import type { ParamMap } from '../engine/init';
import { continueTrainingText, exportFull, exportTimm, type ModelDescription, type RunHyperparameters } from './export';
import { encoderOnnx, maeOnnx } from './onnx';

export type ExportFormat = 'full' | 'timm' | 'onnx';
export const EXPORT_FORMATS: readonly ExportFormat[] = ['full', 'timm', 'onnx'];

export interface ExportFile {
  name: string;
  /** Binary files as bytes, text files as strings. */
  data: Uint8Array | string;
  mime: string;
}

export interface ExportSource {
  model: ModelDescription;
  params: ParamMap;
  /** Per-channel input normalisation the model was trained with, when known. */
  norm?: { mean: number[]; std: number[] };
  /** The run's hyperparameters (from a checkpoint): adds continue-training.txt to a full export. */
  run?: RunHyperparameters;
  /** For continue-training.txt: the user's dataset size / effective batch. */
  stepsPerEpoch?: number;
}

export function exportFiles(src: ExportSource, format: ExportFormat): { files: ExportFile[]; notes: string[] } {
  const notes: string[] = [];
  const json = (o: unknown) => JSON.stringify(o, null, 2) + '\n';
  const c = src.model.config;
  if (format === 'full') {
    const { file, config } = exportFull(src.model, src.params, src.norm);
    const files: ExportFile[] = [
      { name: 'model.safetensors', data: file, mime: 'application/octet-stream' },
      { name: 'config.json', data: json(config), mime: 'application/json' },
    ];
    if (src.run) {
      files.push({ name: 'continue-training.txt', mime: 'text/plain', data: continueTrainingText(src.run, { weightsFile: 'model.safetensors', stepsDone: src.model.step, stepsPerEpoch: src.stepsPerEpoch }) });
    }
    return { files, notes };
  }
  if (format === 'timm') {
    let norm = src.norm;
    if (!norm) {
      norm = { mean: new Array(c.inChans).fill(0.5), std: new Array(c.inChans).fill(0.5) };
      notes.push('The model records no input mean/std; config.json says 0.5/0.5.');
    }
    const { file, config } = exportTimm(src.model, src.params, norm);
    return { files: [{ name: 'model.safetensors', data: file, mime: 'application/octet-stream' }, { name: 'config.json', data: json(config), mime: 'application/json' }], notes };
  }
  const meta: Record<string, string> = src.norm ? { mean: JSON.stringify(src.norm.mean), std: JSON.stringify(src.norm.std) } : {};
  return {
    files: [
      { name: 'encoder.onnx', data: encoderOnnx(c, src.params, meta), mime: 'application/octet-stream' },
      { name: 'mae.onnx', data: maeOnnx(c, src.params, meta), mime: 'application/octet-stream' },
    ],
    notes,
  };
}
