/**
 * The files the PyTorch export check reads (check_export.py): a tiny MAE and a tiny DMAE
 * (student + teacher), exported with src/io/export.ts, the batch and the masking the engine
 * used, and the losses / encoder output of the float64 reference (src/ref/model.ts) on the
 * same float32 weights. Used by `npx tsx scripts/torch-export/make-files.ts <dir>` and by
 * test/io/torch-export.test.ts.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomMasking, type Masking } from '../../src/core/masking';
import { maeConfig, numPatches, type DistillConfig, type MaeConfig } from '../../src/engine/config';
import { DmaeModel, dmaeStudentLayout } from '../../src/engine/dmae';
import { MaeModel } from '../../src/engine/mae';
import type { Gpu } from '../../src/gpu/device';
import { Recorder } from '../../src/gpu/kernels';
import { maeParamLayout } from '../../src/engine/params';
import { exportFull, exportTimm } from '../../src/io/export';
import { perturbedParams as perturbed } from '../../test/model-fixtures';
import { randn } from '../../test/numerics';
import { dmaeLoss, forwardEncoder, forwardDecoder, forwardLoss } from '../../src/ref/model';

/** 16×16×3 images, patch 4 (L = 16), width 32, 2 heads, depth 2; decoder 32×1, 2 heads. */
export const checkStudent = (): MaeConfig => maeConfig('test', { imgSize: 16, patchSize: 4, inChans: 3 });
/** Teacher: width 48 (3 heads), depth 3. */
export const checkTeacher = (): MaeConfig => ({ ...checkStudent(), embedDim: 48, depth: 3, numHeads: 3 });
export const checkDistill: DistillConfig = { pairs: [{ studentBlock: 1, teacherBlock: 1 }], alpha: 1, kind: 'l1' };

/** The GPU model's forward losses on the same weights, batch and masking (float32, WebGPU). */
async function gpuLoss(model: MaeModel, imgs: Float64Array, mk: Masking): Promise<number> {
  model.setBatch(Float32Array.from(imgs), mk);
  const rec = new Recorder(model.gpu);
  model.recordForward(rec);
  await rec.submit();
  const { loss } = await model.readLosses();
  model.destroy();
  return loss;
}

/**
 * Writes the check's files into `dir`. With a `gpu`, case.json also holds the GPU model's
 * losses (the WebGPU engine itself, float32) besides the float64 reference's.
 */
export async function writeTorchCheckFiles(dir: string, gpu?: Gpu): Promise<void> {
  mkdirSync(dir, { recursive: true });
  const N = 2, V = 5;
  const cfg = checkStudent(), tcfg = checkTeacher(), L = numPatches(cfg);
  const imgs = randn(N * cfg.inChans * cfg.imgSize ** 2, 5);
  const mk = randomMasking(Float32Array.from(randn(N * L, 6)), N, L, V);
  const norm = { mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25] };

  // MAE: full export + the reference loss on the batch and mask
  const mae = perturbed(maeParamLayout(cfg), cfg, 11);
  writeFileSync(join(dir, 'mae.safetensors'), exportFull({ mode: 'mae', config: cfg }, mae).file);
  const enc = forwardEncoder(mae, cfg, imgs, mk.idsKeep, N);
  const dec = forwardDecoder(mae, cfg, enc.latent!, mk.idsRestore, N);
  const maeLoss = forwardLoss(cfg, imgs, dec.pred, mk.mask, N).loss;

  // timm encoder: all patches visible, the normed tokens
  const timm = exportTimm({ mode: 'mae', config: cfg }, mae, norm);
  writeFileSync(join(dir, 'vit.safetensors'), timm.file);
  writeFileSync(join(dir, 'config.json'), JSON.stringify(timm.config, null, 2));
  const all = Uint32Array.from({ length: N * L }, (_, i) => i % L);
  const tokens = forwardEncoder(mae, cfg, imgs, all, N).latent!;

  // DMAE: student full export (with its projection head) + a teacher as a full MAE export
  const student = perturbed(dmaeStudentLayout(cfg, tcfg, checkDistill), cfg, 21);
  const teacher = perturbed(maeParamLayout(tcfg), tcfg, 22);
  writeFileSync(join(dir, 'dmae.safetensors'), exportFull({ mode: 'dmae', config: cfg, teacher: tcfg, distill: checkDistill }, student).file);
  writeFileSync(join(dir, 'teacher.safetensors'), exportFull({ mode: 'mae', config: tcfg }, teacher).file);
  const dLoss = dmaeLoss(student, cfg, teacher, tcfg, imgs, mk, N, checkDistill);

  let gpuMaeLoss: number | null = null, gpuDmaeLoss: number | null = null;
  if (gpu) {
    const m = new MaeModel(gpu, cfg, N, V);
    m.uploadParams(mae);
    gpuMaeLoss = await gpuLoss(m, imgs, mk);
    const d = new DmaeModel(gpu, cfg, tcfg, checkDistill, N, V);
    d.uploadParams(student);
    d.uploadTeacher(teacher);
    gpuDmaeLoss = await gpuLoss(d, imgs, mk);
  }

  writeFileSync(join(dir, 'case.json'), JSON.stringify({
    about: 'scripts/torch-export/cases.ts: inputs and the engine\'s float64 reference results for check_export.py',
    config: cfg, teacherConfig: tcfg, distill: checkDistill, N, V, L,
    imgs: Array.from(imgs), idsKeep: Array.from(mk.idsKeep), idsRestore: Array.from(mk.idsRestore), mask: Array.from(mk.mask),
    maeLoss, dmaeLoss: dLoss, gpuMaeLoss, gpuDmaeLoss, gpu: gpu ? gpu.adapter.description : null, timmTokens: Array.from(tokens),
  }));
}
