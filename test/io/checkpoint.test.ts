/**
 * Checkpoints on real WebGPU: a run saved mid-way into one file, read back and resumed in a new
 * Trainer (with a differently seeded loader, which the checkpoint must override) gives the
 * same losses bit for bit as the run that was never interrupted — MAE, and DMAE with its teacher
 * inside the checkpoint. Hostile checkpoints are refused with a message naming the problem.
 */
import { describe, expect, it } from 'vitest';
import { maeConfig } from '../../src/engine/config';
import { maeParamLayout } from '../../src/engine/params';
import { Trainer, type StepMetrics, type TrainConfig } from '../../src/engine/trainer';
import { DataLoader } from '../../src/data/loader';
import { makeShapesDataset } from '../../src/data/procedural';
import { CheckpointError, captureCheckpoint, decodeCheckpoint, encodeCheckpoint, resumeTrainer } from '../../src/io/checkpoint';
import { importStudioModel, importTeacher } from '../../src/io/import';
import { SafetensorsError, readSafetensors, writeSafetensors } from '../../src/io/safetensors';
import { expectSameBits, rng, testGpu } from '../helpers';
import { perturbedParams } from '../model-fixtures';

const cfg = maeConfig('test', { imgSize: 16, patchSize: 4, inChans: 1 });
const tcfg = maeConfig('test', { imgSize: 16, patchSize: 4, inChans: 1 }, { embedDim: 48, depth: 3, numHeads: 3 });
const shapes = makeShapesDataset({ n: 120, size: 16, channels: 1, seed: 1 });
const loader = (seed: number) => new DataLoader(shapes, { split: 'train', batchSize: 4, seed });
const run = (over: Partial<TrainConfig> = {}): TrainConfig => ({ mode: 'mae', model: cfg, batch: 4, maskRatio: 0.75, lr: 2e-3, warmupSteps: 2, totalSteps: 6, seed: 5, ...over });
const dataset = { name: 'shapes', mean: [0.5], std: [0.25] };

async function collect(t: Trainer, until?: number): Promise<StepMetrics[]> {
  const out: StepMetrics[] = [];
  const r = await t.train({ until, onMetrics: (m) => void out.push(m) });
  expect(r.status, r.divergence?.message).toBe('done');
  return out;
}

const losses = (m: StepMetrics[]) => Float32Array.from(m.flatMap((x) => [x.loss, x.pix, ...(x.distill ?? [])]));

describe('checkpoint → resume continues exactly', () => {
  for (const mode of ['mae', 'dmae'] as const) {
    it(`${mode.toUpperCase()}: save after 3 of 6 steps, resume from the file: steps 4–6 bit-identical`, async () => {
      const gpu = await testGpu();
      const c = mode === 'dmae' ? run({ mode, teacher: tcfg, accumSteps: 2 }) : run();
      const teacher = mode === 'dmae' ? perturbedParams(maeParamLayout(tcfg), tcfg, 3) : undefined;
      const whole = new Trainer(gpu, c, loader(5), { teacherParams: teacher });
      const all = await collect(whole);
      whole.destroy();

      const first = new Trainer(gpu, c, loader(5), { teacherParams: teacher });
      await collect(first, 3);
      const bytes = await captureCheckpoint(first, dataset);
      first.destroy();

      const ck = decodeCheckpoint(bytes, 'run.ckpt.safetensors');
      expect(ck.meta.trainer.step).toBe(3);
      expect(ck.meta.schedule).toEqual({ step: 3, totalSteps: 6, nextLr: ck.meta.schedule.nextLr });
      expect(ck.meta.schedule.nextLr).toBeGreaterThan(0);
      expect(ck.meta.trainer.source).toEqual({ seed: 5, epoch: 0, position: 3 * 4 * (c.accumSteps ?? 1) });
      expect(ck.meta.dataset).toEqual(dataset);
      expect(ck.meta.hasTeacher).toBe(mode === 'dmae');
      const names = [...readSafetensors(bytes).tensors.keys()];
      expect(names).toContain('optimizer.exp_avg_sq.blocks.0.attn.qkv.weight');
      if (mode === 'dmae') expect(names).toContain('teacher.blocks.1.mlp.fc2.weight');

      // The teacher comes from the checkpoint; the loader's seed from the checkpoint's state.
      const resumed = resumeTrainer(gpu, ck, loader(999));
      expect(resumed.step).toBe(3);
      const rest = await collect(resumed);
      expect(rest.map((m) => m.step)).toEqual([4, 5, 6]);
      expectSameBits(losses(rest), losses(all.slice(3)), `${mode} losses of steps 4–6 after resuming`);
      resumed.destroy();
    });
  }

  it('a checkpoint is also an importable model (and teacher): model.* stripped, optimizer.* ignored', async () => {
    const gpu = await testGpu();
    const t = new Trainer(gpu, run({ totalSteps: 2 }), loader(5));
    await collect(t);
    const bytes = await captureCheckpoint(t);
    const params = await t.readParams();
    t.destroy();
    const m = importStudioModel(bytes, { file: 'ck' });
    expect(m.report.prefix).toBe('model.');
    expect(m.model.step).toBe(2);
    for (const [n, v] of params) expect(m.params.get(n), n).toEqual(v);
    expect(m.report.unexpected).toEqual([]);
    expect(importTeacher(bytes).config).toEqual({ ...cfg });
  });
});

describe('hostile checkpoints', () => {
  const layout = maeParamLayout(cfg);
  const p = perturbedParams(layout, cfg, 1);
  const meta = { config: { mode: 'mae', model: cfg, teacher: null, distill: null, maskRatio: 0.75, visible: 4, patches: 16, batch: 4, accumSteps: 1, lr: 1e-3, baseLr: null, minLr: 0, warmupSteps: 0, totalSteps: 10, weightDecay: 0.05, beta1: 0.9, beta2: 0.95, eps: 1e-8, clipGrad: null, seed: 1, nanGuard: 'restore' } as never, trainer: { step: 4, masking: [1, 2, 3, 4] as [number, number, number, number] } };
  const good = encodeCheckpoint({ meta, params: p, adamM: p, adamV: p, teacher: null });

  const rewrite = (edit: (m: Record<string, any>) => void, dropTensor?: string): Uint8Array => {
    const st = readSafetensors(good);
    const md = { ...st.metadata };
    const m = JSON.parse(md.dmae_studio_checkpoint);
    edit(m);
    md.dmae_studio_checkpoint = JSON.stringify(m);
    return writeSafetensors([...st.tensors.values()].filter((t) => t.name !== dropTensor).map((t) => ({ name: t.name, shape: t.shape, dtype: t.dtype, data: t.bytes })), md);
  };

  it('round-trips the state exactly', () => {
    const ck = decodeCheckpoint(good);
    expect(ck.meta.trainer).toEqual(meta.trainer);
    for (const [n, v] of p) expect(ck.adamV.get(n)).toEqual(v);
  });

  it('refuses wrong formats, versions, states and tensors with a message', () => {
    const refuse = (b: Uint8Array, re: RegExp) => expect(() => decodeCheckpoint(b, 'x.ckpt')).toThrow(re);
    refuse(writeSafetensors([{ name: 'a', shape: [1], data: [1] }]), /x\.ckpt: no __metadata__\.dmae_studio_checkpoint: not a DMAE Studio checkpoint/);
    refuse(rewrite((m) => (m.version = 2)), /version 2 is not supported/);
    refuse(rewrite((m) => (m.trainer.step = 11)), /step 11 is not in 0\.\.10/);
    refuse(rewrite((m) => (m.trainer.masking = [1, 2, 2 ** 33, 4])), /masking stream state/);
    refuse(rewrite((m) => (m.config.model.numHeads = 5)), /run configuration is invalid: .*not divisible by 5 heads/);
    refuse(rewrite((m) => (m.config.lr = 'fast')), /lr fast is not a finite number/);
    refuse(rewrite(() => undefined, 'optimizer.exp_avg.norm.bias'), /missing optimizer\.exp_avg\.norm\.bias/);
    refuse(rewrite((m) => (m.config.model.mlpRatio = 2)), /model\.blocks\.0\.mlp\.fc1\.weight is \[128, 32\], expected \[64, 32\]/);
  });

  it('fuzz: 150 seeded mutations give a checkpoint or a SafetensorsError/CheckpointError, never anything else', () => {
    const r = rng(77);
    let errors = 0;
    for (let i = 0; i < 150; i++) {
      const b = good.slice();
      const hlen = new DataView(b.buffer).getUint32(0, true);
      for (let k = 0; k < 1 + Math.floor(r() * 3); k++) {
        const at = r() < 0.8 ? 8 + Math.floor(r() * hlen) : Math.floor(r() * b.length); // mostly the JSON header
        b[at] = r() < 0.5 ? 0x30 + Math.floor(r() * 10) : Math.floor(r() * 256);
      }
      try {
        decodeCheckpoint(b, 'fuzz');
      } catch (e) {
        if (!(e instanceof SafetensorsError || e instanceof CheckpointError)) throw new Error(`fuzz case ${i}: ${(e as Error).stack}`);
        errors++;
      }
    }
    expect(errors).toBeGreaterThan(50);
  });
});
