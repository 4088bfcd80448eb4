/**
 * `npm run dmae -- export <checkpoint> --format full|timm|onnx --out DIR`: a trained model out
 * of the studio, and the file helpers the train command uses for checkpoints and teachers.
 *
 *   <checkpoint>   a checkpoint (checkpoint.safetensors of a run, or a run folder holding one),
 *                  or a full model export (model.safetensors)
 *   full           DIR/model.safetensors (reference names) + DIR/config.json, and, from a
 *                  checkpoint, DIR/continue-training.txt (the torchrun command line)
 *   timm           DIR/model.safetensors (the encoder, timm names) + DIR/config.json (timm's)
 *   onnx           DIR/encoder.onnx (image → tokens, cls) + DIR/mae.onnx (image, ids_keep,
 *                  ids_restore → pred, mask), opset 17
 */
import { existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import type { MaeConfig } from '../engine/config';
import type { ParamMap } from '../engine/init';
import { CHECKPOINT_METADATA_KEY, decodeCheckpoint, type Checkpoint } from '../io/checkpoint';
import { EXPORT_FORMATS, exportFiles, type ExportFormat } from '../io/bundle';
import type { ModelDescription } from '../io/export';
import { importStudioModel, importTeacher, type ImportReport } from '../io/import';
import { readSafetensors } from '../io/safetensors';

export const EXPORT_HELP = `Usage: npm run dmae -- export <checkpoint> --format full|timm|onnx --out DIR

  <checkpoint>        a run's checkpoint.safetensors (or the run folder), or a full model export
  --format full       DIR/model.safetensors with the MAE reference names (DMAE: with
                      aligned_feature_projection_heads), DIR/config.json, and from a checkpoint
                      DIR/continue-training.txt: the torchrun command that carries the run on in PyTorch
  --format timm       the encoder as a timm ViT: DIR/model.safetensors + DIR/config.json
                      (loads with strict=True; num_classes 0, global_pool 'token')
  --format onnx       DIR/encoder.onnx (image → tokens, cls) and DIR/mae.onnx (image, ids_keep,
                      ids_restore → predicted patches, mask); opset 17
  --mean M,… --std S,…  input normalisation for timm's config when the file does not record it
  --steps-per-epoch K the user's dataset size / effective batch: converts the run's steps into the
                      reference code's epochs in continue-training.txt
`;

/** A checkpoint file, or the checkpoint.safetensors inside a run folder. */
export function checkpointPath(path: string): string {
  return existsSync(path) && statSync(path).isDirectory() ? join(path, 'checkpoint.safetensors') : path;
}

export function loadCheckpointFile(path: string): Checkpoint {
  const file = checkpointPath(path);
  if (!existsSync(file)) throw new Error(`${path}: no such checkpoint${file !== path ? ` (no checkpoint.safetensors in that folder)` : ''}.`);
  return decodeCheckpoint(new Uint8Array(readFileSync(file)), file);
}

/** Writes via a temporary file and a rename, so a crash mid-write never leaves half a checkpoint. */
export function writeFileAtomic(path: string, bytes: Uint8Array | string): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, bytes);
  renameSync(tmp, path);
}

/** A DMAE teacher from a .safetensors file (reference or timm names; a config.json beside it gives the heads). */
export function readTeacherSafetensors(path: string): { config: MaeConfig; params: ParamMap; step: number; report: ImportReport } {
  const cfgPath = join(dirname(path), 'config.json');
  let configJson: unknown;
  if (existsSync(cfgPath)) {
    try {
      configJson = JSON.parse(readFileSync(cfgPath, 'utf8'));
    } catch (e) {
      throw new Error(`${cfgPath}: ${(e as Error).message}`);
    }
  }
  const r = importTeacher(new Uint8Array(readFileSync(path)), { file: path, configJson });
  return { config: r.config, params: r.params, step: r.report.studio?.step ?? 0, report: r.report };
}

interface Source {
  model: ModelDescription;
  params: ParamMap;
  checkpoint: Checkpoint | null;
  norm?: { mean: number[]; std: number[] };
}

function readSource(path: string): Source {
  const file = checkpointPath(path);
  if (!existsSync(file)) throw new Error(`${path}: no such file${file !== path ? ' (no checkpoint.safetensors in that folder)' : ''}.`);
  const bytes = new Uint8Array(readFileSync(file));
  const st = readSafetensors(bytes, { file });
  if (st.metadata[CHECKPOINT_METADATA_KEY] !== undefined) {
    const ck = decodeCheckpoint(bytes, file);
    const c = ck.meta.config;
    return {
      model: { mode: c.mode, config: c.model, teacher: c.teacher, distill: c.distill, step: ck.meta.trainer.step },
      params: ck.params, checkpoint: ck, norm: ck.meta.dataset ? { mean: ck.meta.dataset.mean, std: ck.meta.dataset.std } : undefined,
    };
  }
  const m = importStudioModel(bytes, { file });
  const s = m.report.studio;
  return { model: m.model, params: m.params, checkpoint: null, norm: s?.mean && s?.std ? { mean: s.mean, std: s.std } : undefined };
}

const list = (v: string | undefined, what: string): number[] | undefined => {
  if (v === undefined) return undefined;
  const xs = v.split(',').map(Number);
  if (xs.some((x) => !Number.isFinite(x))) throw new Error(`--${what} ${v} must be comma-separated numbers.`);
  return xs;
};

export async function exportCommand(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args, allowPositionals: true, strict: true,
    options: { format: { type: 'string' }, out: { type: 'string' }, mean: { type: 'string' }, std: { type: 'string' }, 'steps-per-epoch': { type: 'string' } },
  });
  if (positionals.length !== 1) throw new Error(`export takes one checkpoint or model file (got ${positionals.length}).\n\n${EXPORT_HELP}`);
  const format = (values.format ?? 'full') as ExportFormat;
  if (!EXPORT_FORMATS.includes(format)) throw new Error(`--format ${format} must be full, timm or onnx.`);
  if (!values.out) throw new Error('--out DIR is needed.');
  const spe = values['steps-per-epoch'] !== undefined ? Number(values['steps-per-epoch']) : undefined;
  if (spe !== undefined && !(spe > 0)) throw new Error(`--steps-per-epoch ${values['steps-per-epoch']} must be a positive number.`);
  const src = readSource(positionals[0]);
  const mean = list(values.mean, 'mean') ?? src.norm?.mean, std = list(values.std, 'std') ?? src.norm?.std;
  const { files, notes } = exportFiles({
    model: src.model, params: src.params, norm: mean && std ? { mean, std } : undefined,
    run: src.checkpoint?.meta.config, stepsPerEpoch: spe,
  }, format);
  const log = (s: string) => process.stdout.write(`${s}\n`);
  for (const n of notes) log(`note: ${n}`);
  for (const f of files) {
    writeFileAtomic(join(values.out, f.name), f.data);
    log(`wrote ${join(values.out, f.name)} (${typeof f.data === 'string' ? f.data.length : f.data.byteLength} bytes)`);
  }
  log(`${format} export of a ${src.model.mode.toUpperCase()} at step ${src.model.step ?? 0}${format === 'onnx' ? ' (opset 17)' : ''}`);
  return 0;
}
