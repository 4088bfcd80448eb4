/**
 * The knowledge-distillation baseline on real WebGPU: one KD step (the teacher's forward, the
 * copy of its logits, the student's forward and backward, one command buffer) gives the
 * student's loss and every gradient of a float64 reference composed from src/ref; a few KD
 * steps on a separable toy set bring the student's KL to its teacher down and its accuracy up;
 * the mismatches are refused with messages.
 */
import { blobs } from '../blobs';
import { describe, expect, it } from 'vitest';
import type { ImageDataset } from '../../src/data/dataset';
import { DataLoader } from '../../src/data/loader';
import {
  Classifier, checkKdPair, classificationMetrics, finetuneParamLayout, initFinetuneParams, predictAll, recordTeacherLogits, trainClassifier, trainKdStudent,
  type KdStepMetrics,
} from '../../src/engine/classifier';
import { maeConfig, type MaeConfig } from '../../src/engine/config';
import * as refCls from '../../src/ref/classify';
import { expectClose, expectSameBits, expectSameParams, randn, run, testGpu, TOL } from '../helpers';
import { perturbedParams } from '../model-fixtures';
import { refClassifier } from '../ref-classifier';


const cfgOf = (patchSize: number, o: Partial<MaeConfig>): MaeConfig =>
  maeConfig('test', { imgSize: 8, patchSize, inChans: 3 }, { decoderEmbedDim: 8, decoderNumHeads: 2, ...o });


describe('knowledge distillation on the GPU vs the float64 reference', () => {
  it('one KD step: the teacher\'s logits reach the student inside the command buffer; loss and every student gradient match', async () => {
    const gpu = await testGpu();
    // A different teacher (wider, shallower, smaller patches) than the student: only classes and images are shared.
    const tcfg = cfgOf(2, { embedDim: 12, depth: 1, numHeads: 3 });
    const scfg = cfgOf(4, { embedDim: 8, depth: 2, numHeads: 2 });
    const [N, K] = [3, 5];
    const o = { temperature: 4, softWeight: 0.5 }, eps = 0.1;
    const tParams = perturbedParams(finetuneParamLayout(tcfg, K), tcfg, 3);
    const sParams = perturbedParams(finetuneParamLayout(scfg, K), scfg, 7);
    // A sharper teacher head, so that the soft targets are far from uniform.
    tParams.set('head.weight', tParams.get('head.weight')!.map((v) => Math.fround(4 * v)));
    const imgs = randn(N * 3 * 64, 8);
    const labels = Uint32Array.from([4, 0, 2]);

    const t = refClassifier(tParams, tcfg, imgs, N, K);
    const s = refClassifier(sParams, scfg, imgs, N, K);
    const stats = new Float64Array(2), dlogits = new Float64Array(N * K);
    refCls.kdCrossEntropyForward(stats, new Uint32Array(N), s.logits, t.logits, labels, N, K, { ...o, smoothing: eps });
    refCls.kdCrossEntropyBackward(dlogits, s.logits, t.logits, labels, N, K, { ...o, smoothing: eps });
    const G = s.backward(dlogits);

    const teacher = new Classifier(gpu, tcfg, { mode: 'finetune', numClasses: K, batch: N });
    const student = new Classifier(gpu, scfg, { mode: 'finetune', numClasses: K, batch: N, labelSmoothing: eps, distill: o }, 0.75);
    teacher.uploadParams(tParams);
    student.uploadParams(sParams);
    teacher.setBatch(Float32Array.from(imgs), labels, N);
    student.setBatch(Float32Array.from(imgs), labels, N);
    await run(gpu, (rec) => {
      recordTeacherLogits(rec, student, teacher, N);
      student.recordZeroGrads(rec);
      student.recordForward(rec, N, true);
      student.recordBackward(rec, N);
    });
    expectClose(await teacher.readLogits(N), t.logits, TOL.reduction, 'teacher logits');
    expectClose(await student.readLogits(N), s.logits, TOL.reduction, 'student logits');
    expectClose([(await student.readStats()).loss], [stats[0]], TOL.reduction, 'KD loss');
    expectSameParams(await student.readGrads(), G, TOL.gradient, 'd KD loss /');
    // The soft term matters here: the KD gradient of the head is far from the plain cross-entropy's.
    const plain = new Float64Array(N * K);
    refCls.crossEntropyBackward(plain, s.logits, labels, N, K, eps);
    const hw = s.backward(plain).get('head.weight')!, kw = G.get('head.weight')!;
    expect(Math.max(...kw.map((v, i) => Math.abs(v - hw[i])))).toBeGreaterThan(1e-2 * Math.max(...hw.map(Math.abs)));
    // An evaluation forward reports the hard-label cross-entropy, not the KD loss.
    await run(gpu, (rec) => student.recordForward(rec, N, false));
    const ce = new Float64Array(2);
    refCls.crossEntropyForward(ce, new Uint32Array(N), s.logits, labels, N, K, eps);
    expectClose([(await student.readStats()).loss], [ce[0]], TOL.reduction, 'evaluation loss');
    teacher.destroy();
    student.destroy();
  });
});

describe('knowledge distillation from a frozen (forward-only) teacher', () => {
  it('gives the same student, bit for bit, as a trainable teacher with the same weights: one recorded step and trainKdStudent', async () => {
    const gpu = await testGpu();
    const tcfg = cfgOf(2, { embedDim: 12, depth: 3, numHeads: 3 });
    const scfg = cfgOf(4, { embedDim: 8, depth: 2, numHeads: 2 });
    const [N, K] = [4, 3];
    const o = { temperature: 2, softWeight: 0.7 };
    const tParams = perturbedParams(finetuneParamLayout(tcfg, K), tcfg, 5);
    tParams.set('head.weight', tParams.get('head.weight')!.map((v) => Math.fround(4 * v)));
    const sParams = initFinetuneParams(scfg, K, null, 2);
    const teachers = [false, true].map((frozen) => new Classifier(gpu, tcfg, { mode: 'finetune', numClasses: K, batch: N, frozen }));
    const students = teachers.map(() => new Classifier(gpu, scfg, { mode: 'finetune', numClasses: K, batch: N, labelSmoothing: 0.1, distill: o }, 0.75));
    for (const t of teachers) t.uploadParams(tParams);
    for (const s of students) s.uploadParams(sParams);
    const flat0 = students[0].params.layout.entries.flatMap((e) => [...sParams.get(e.name)!]);
    expect(() => checkKdPair(students[1], teachers[1])).not.toThrow();

    // One step as bench/train.ts records it: the teacher's forward, the copy, the student's step.
    const imgs = Float32Array.from(randn(N * 3 * 64, 6));
    const labels = [2, 0, 1, 1];
    for (const [i, s] of students.entries()) {
      const t = teachers[i];
      t.setBatch(imgs, labels, N);
      s.setBatch(imgs, labels, N);
      await run(gpu, (rec) => {
        recordTeacherLogits(rec, s, t, N);
        s.recordTrainStep(rec, { lr: 1e-2, step: 1, weightDecay: 0.05 });
      });
    }
    expectSameBits(await teachers[1].readLogits(N), await teachers[0].readLogits(N), 'teacher logits');
    const stats = await Promise.all(students.map(async (s) => (await s.readStats()).loss));
    expect(stats[1], 'student KD loss').toBe(stats[0]);
    // Every student parameter as one float32 array (the arena's values, in table order).
    const flat = async (c: Classifier) => {
      const p = await c.readParams();
      return Float32Array.from(c.params.layout.entries.flatMap((e) => [...p.get(e.name)!]));
    };
    const after = await Promise.all(students.map(flat));
    expectSameBits(after[1], after[0], 'student parameters after one KD step');
    // The step moved the student (so that the comparison above compares an update).
    expect(after[0].some((v, i) => v !== Math.fround(flat0[i]))).toBe(true);

    // A few steps of the driver on a toy set: the same student again, and the same logged metrics.
    const ds = blobs(K, 8, 8, 7, { C: 3 });
    const logs: KdStepMetrics[][] = [[], []];
    for (const [i, s] of students.entries()) {
      await trainKdStudent(s, teachers[i], new DataLoader(ds, { split: 'train', batchSize: N, seed: 3, augment: false }), {
        steps: 3, lr: 5e-3, warmupSteps: 1, logEvery: 1, onStep: (m) => logs[i].push(m),
      });
    }
    expect(logs[1]).toEqual(logs[0]);
    const trained = await Promise.all(students.map(flat));
    expectSameBits(trained[1], trained[0], 'student parameters after trainKdStudent');
    for (const c of [...teachers, ...students]) c.destroy();
  });
});

describe('knowledge distillation: known answers and refusals', () => {

  /** Mean over the validation images of KL(softmax(t/τ) ‖ softmax(s/τ)), from both models' logits. */
  async function valKl(student: Classifier, teacher: Classifier, ds: ImageDataset, tau: number): Promise<number> {
    const K = student.K;
    let sum = 0, n = 0;
    const val = new DataLoader(ds, { split: 'val', batchSize: student.batch, seed: 1 });
    while (n < val.count) {
      const b = val.next();
      const m = Math.min(b.size, val.count - n);
      for (const c of [student, teacher]) {
        c.setBatch(b.x, b.labels, m);
        await run(c.gpu, (rec) => c.recordForward(rec, m, false));
      }
      const s = Float64Array.from(await student.readLogits(m)), t = Float64Array.from(await teacher.readLogits(m));
      const st = new Float64Array(2);
      // λ = 1, τ: the loss is τ²·KL averaged over the rows.
      refCls.kdCrossEntropyForward(st, new Uint32Array(m), s, t, Uint32Array.from(b.labels!.subarray(0, m)), m, K, { softWeight: 1, temperature: tau });
      sum += (st[0] / tau ** 2) * m;
      n += m;
    }
    return sum / n;
  }

  it('a few KD steps on soft labels only (λ = 1) bring the student\'s KL to its teacher down and its accuracy up', { timeout: 120_000 }, async () => {
    const gpu = await testGpu();
    const K = 4, B = 16, tau = 2;
    const ds = blobs(K, 24, 8, 3);
    const tcfg = maeConfig('test', { imgSize: 8, patchSize: 4, inChans: 1 }, { embedDim: 16, depth: 1, numHeads: 2 });
    const scfg = maeConfig('test', { imgSize: 8, patchSize: 2, inChans: 1 }, { embedDim: 8, depth: 1, numHeads: 2 });
    const teacher = new Classifier(gpu, tcfg, { mode: 'finetune', numClasses: K, batch: B });
    teacher.uploadParams(initFinetuneParams(tcfg, K, null, 1));
    await trainClassifier(teacher, new DataLoader(ds, { split: 'train', batchSize: B, seed: 2, augment: false }), { steps: 40, lr: 3e-3, warmupSteps: 3 });
    const tAcc = classificationMetrics((await predictAll(teacher, new DataLoader(ds, { split: 'val', batchSize: B, seed: 1 }))).pred,
      Int32Array.from({ length: ds.N - ds.nTrain }, (_, i) => ds.labels![ds.nTrain + i]), K).accuracy;
    expect(tAcc, 'the teacher learned the toy set').toBeGreaterThanOrEqual(0.9);
    // Sharpen it (the same predictions, larger logits): soft labels far from uniform, so that
    // a student that ignored them would stay far from its teacher.
    const tp = await teacher.readParams();
    for (const n of ['head.weight', 'head.bias']) tp.set(n, tp.get(n)!.map((v) => Math.fround(4 * v)));
    teacher.uploadParams(tp);

    const student = new Classifier(gpu, scfg, { mode: 'finetune', numClasses: K, batch: B, distill: { temperature: tau, softWeight: 1 } }, 1);
    student.uploadParams(initFinetuneParams(scfg, K, null, 5));
    const klBefore = await valKl(student, teacher, ds, tau);
    const accOf = async () => {
      const r = await predictAll(student, new DataLoader(ds, { split: 'val', batchSize: B, seed: 1 }));
      return classificationMetrics(r.pred, r.labels, K).accuracy;
    };
    const accBefore = await accOf();
    const log: KdStepMetrics[] = [];
    await trainKdStudent(student, teacher, new DataLoader(ds, { split: 'train', batchSize: B, seed: 4, augment: false }), {
      steps: 60, lr: 1e-2, warmupSteps: 3, weightDecay: 0, logEvery: 10, onStep: (m) => log.push(m),
    });
    const klAfter = await valKl(student, teacher, ds, tau);
    const accAfter = await accOf();
    expect(log.map((m) => m.step)).toEqual([1, 10, 20, 30, 40, 50, 60]);
    expect(log.every((m) => m.teacherAccuracy >= 0.75), `the teacher sees the same batches (${log.map((m) => m.teacherAccuracy).join(' ')})`).toBe(true);
    expect(log[log.length - 1].loss, `KD loss went down (${log.map((m) => m.loss.toFixed(4)).join(' ')})`).toBeLessThan(0.5 * log[0].loss);
    expect(klAfter, `KL to the teacher: ${klBefore.toFixed(4)} → ${klAfter.toFixed(4)}`).toBeLessThan(0.3 * klBefore);
    expect(accAfter, `student accuracy ${accBefore} → ${accAfter}`).toBeGreaterThanOrEqual(0.9);
    expect(accAfter).toBeGreaterThan(accBefore);
    teacher.destroy();
    student.destroy();
  });

  it('refuses distillation outside fine-tuning, bad λ or τ, and teachers of other classes, images or batch', async () => {
    const gpu = await testGpu();
    const cfg = maeConfig('test', { imgSize: 8, patchSize: 4, inChans: 1 }, { embedDim: 8, depth: 1, numHeads: 2 });
    expect(() => new Classifier(gpu, cfg, { mode: 'linprobe', numClasses: 3, batch: 2, distill: { temperature: 4, softWeight: 0.5 } })).toThrow(/needs mode 'finetune'/);
    expect(() => new Classifier(gpu, cfg, { mode: 'finetune', numClasses: 3, batch: 2, distill: { temperature: 0, softWeight: 0.5 } })).toThrow(/temperature 0/);
    expect(() => new Classifier(gpu, cfg, { mode: 'finetune', numClasses: 3, batch: 2, distill: { temperature: 4, softWeight: 2 } })).toThrow(/soft weight 2/);
    const student = new Classifier(gpu, cfg, { mode: 'finetune', numClasses: 3, batch: 4, distill: { temperature: 4, softWeight: 0.5 } });
    const plain = new Classifier(gpu, cfg, { mode: 'finetune', numClasses: 3, batch: 4 });
    const other = [
      new Classifier(gpu, cfg, { mode: 'finetune', numClasses: 4, batch: 4 }),
      new Classifier(gpu, { ...cfg, imgSize: 16 }, { mode: 'finetune', numClasses: 3, batch: 4 }),
      new Classifier(gpu, { ...cfg, inChans: 3 }, { mode: 'finetune', numClasses: 3, batch: 4 }),
      new Classifier(gpu, cfg, { mode: 'finetune', numClasses: 3, batch: 2 }),
    ];
    expect(() => checkKdPair(student, other[0])).toThrow(/teacher has 4 classes, the student 3/);
    expect(() => checkKdPair(student, other[1])).toThrow(/16×16×1 images, the student 8×8×1/);
    expect(() => checkKdPair(student, other[2])).toThrow(/8×8×3 images/);
    expect(() => checkKdPair(student, other[3])).toThrow(/batch \(2\) is smaller/);
    expect(() => checkKdPair(plain, student)).toThrow(/not built with distill/);
    expect(() => checkKdPair(student, plain)).not.toThrow();
    expect(() => plain.teacherLogits).toThrow(/not built with distill/);
    for (const c of [student, plain, ...other]) c.destroy();
  });
});
