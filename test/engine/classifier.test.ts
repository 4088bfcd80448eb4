/**
 * Evaluation on real WebGPU: fine-tuning's loss and every gradient against a float64 reference
 * composed from src/ref, one AdamW step with the layer-decay scales, the recipe's layer-decay
 * numbers, and known answers: separable toy data reaches ~100 % with the linear probe and k-NN,
 * a random encoder on random labels is near chance, fine-tuning a tiny ViT on easy shapes beats
 * chance clearly.
 */
import { blobs } from '../blobs';
import { describe, expect, it } from 'vitest';
import { makeDataset } from '../../src/data/dataset';
import { DataLoader } from '../../src/data/loader';
import { makeShapesDataset } from '../../src/data/procedural';
import {
  Classifier, classificationMetrics, encoderParamLayout, extractFeatures, finetuneParamLayout, initFinetuneParams, initHead, knnPredict, knnVote,
  layerDecayScale, predictAll, predictFeatures, trainClassifier, trainProbeOnFeatures,
} from '../../src/engine/classifier';
import { maeConfig, type MaeConfig } from '../../src/engine/config';
import { initParams } from '../../src/engine/init';
import { lrScaleRanges, decayRanges } from '../../src/gpu/ops/adamw';
import { Recorder } from '../../src/gpu/kernels';
import * as refAdamw from '../../src/ref/adamw';
import * as refCls from '../../src/ref/classify';
import { expectClose, expectSameBits, expectSameParams, randn, rng, run, testGpu, TOL } from '../helpers';
import { refClassifier } from '../ref-classifier';
import { flatten, perturbedParams, unflatten } from '../model-fixtures';

const tiny = (o: Partial<MaeConfig> = {}): MaeConfig =>
  maeConfig('test', { imgSize: 8, patchSize: 4, inChans: 3 }, { embedDim: 8, depth: 2, numHeads: 2, decoderEmbedDim: 8, decoderNumHeads: 2, ...o });

describe('layer-wise lr decay (recipe §5)', () => {
  it('depth 12, decay 0.75: block i gets 0.75^(12 − i), patch embed / cls / pos embed 0.75^13, head and fc_norm 1', () => {
    const d = 0.75;
    expect(layerDecayScale('blocks.0.attn.qkv.weight', 12, d)).toBe(d ** 12);
    expect(layerDecayScale('blocks.5.norm1.bias', 12, d)).toBe(d ** 7);
    expect(layerDecayScale('blocks.11.mlp.fc2.weight', 12, d)).toBe(0.75);
    for (const n of ['patch_embed.proj.weight', 'patch_embed.proj.bias', 'cls_token', 'pos_embed']) expect(layerDecayScale(n, 12, d), n).toBe(d ** 13);
    for (const n of ['fc_norm.weight', 'fc_norm.bias', 'head.weight', 'head.bias']) expect(layerDecayScale(n, 12, d), n).toBe(1);
    // Concrete numbers (MAE's param_groups_lrd, num_layers = 13): 0.75^12 ≈ 0.0317, 0.75^13 ≈ 0.0238.
    expect(layerDecayScale('blocks.0.attn.qkv.weight', 12, d)).toBeCloseTo(0.031676352, 8);
    expect(layerDecayScale('cls_token', 12, d)).toBeCloseTo(0.023757264, 8);
  });

  it('the AdamW lr-scale table of a depth-12 fine-tuning model carries exactly those scales', () => {
    const cfg = maeConfig('vit-tiny', { imgSize: 32, patchSize: 4, inChans: 3 });
    const layout = finetuneParamLayout(cfg, 10);
    const t = lrScaleRanges(layout, (n) => layerDecayScale(n, 12, 0.75));
    const f = new Float32Array(t.buffer);
    const scaleAt = (i: number): number => {
      for (let r = 0; r < t.length; r += 3) if (i >= t[r] && i < t[r + 1]) return f[r + 2];
      return 1;
    };
    for (const e of layout.entries) expect(scaleAt(e.start), e.name).toBe(Math.fround(layerDecayScale(e.name, 12, 0.75)));
    expect(layout.has('norm.weight'), 'fine-tuning has fc_norm instead of norm').toBe(false);
  });
});

describe('fine-tuning on the GPU vs the float64 reference', () => {
  it('loss, logits and every gradient (head, fc_norm, blocks, cls, patch embed) match; one AdamW step with layer decay matches', async () => {
    const gpu = await testGpu();
    const cfg = tiny();
    const [N, K, eps] = [3, 5, 0.1];
    const layout = finetuneParamLayout(cfg, K);
    const params = perturbedParams(layout, cfg, 7);
    const imgs = randn(N * cfg.inChans * cfg.imgSize ** 2, 8);
    const labels = Uint32Array.from([4, 0, 2]);

    // Reference: the encoder of src/ref/model.ts (all patches visible, raw last block), then the new ops.
    const { logits, backward } = refClassifier(params, cfg, imgs, N, K);
    const stats = new Float64Array(2);
    refCls.crossEntropyForward(stats, new Uint32Array(N), logits, labels, N, K, eps);
    const dlogits = new Float64Array(N * K);
    refCls.crossEntropyBackward(dlogits, logits, labels, N, K, eps);
    const G = backward(dlogits);

    const model = new Classifier(gpu, cfg, { mode: 'finetune', numClasses: K, batch: N, labelSmoothing: eps }, 0.75);
    model.uploadParams(params);
    model.setBatch(Float32Array.from(imgs), labels, N);
    await run(gpu, (rec) => {
      model.recordZeroGrads(rec);
      model.recordForward(rec, N, true);
      model.recordBackward(rec, N);
    });
    expectClose([(await model.readStats()).loss], [stats[0]], TOL.reduction, 'loss');
    expectClose(await model.readLogits(N), logits, TOL.reduction, 'logits');
    expectSameParams(await model.readGrads(), G, TOL.gradient, 'd loss /');

    // One AdamW step with the decay table and the layer-decay lr scales, against the reference.
    const opts = { lr: 1e-2, step: 1, weightDecay: 0.05, beta1: 0.9, beta2: 0.999 };
    await run(gpu, (rec) => model.recordOptimizer(rec, opts));
    const p = flatten(layout, params), g = flatten(layout, G);
    // The GPU's own gradients (already checked above): this compares the step, not the gradient again.
    const gpuGrads = flatten(layout, await model.readGrads());
    expectClose(gpuGrads, g, TOL.gradient, 'flattened gradients');
    refAdamw.adamwStep(p, gpuGrads, new Float64Array(layout.size), new Float64Array(layout.size), decayRanges(layout), Float64Array.of(1), layout.size, opts,
      lrScaleRanges(layout, (n) => layerDecayScale(n, cfg.depth, 0.75)));
    const after = await model.readParams();
    expectSameParams(after, unflatten(layout, p), TOL.elementwise, 'after one step:');
    // Adam's first step moves every element by about lr·scale: block 0 by 0.75², the head by 1.
    const moved = (name: string) => Math.max(...after.get(name)!.map((v, i) => Math.abs(v - params.get(name)![i])));
    expect(moved('blocks.0.mlp.fc1.weight') / moved('head.weight')).toBeCloseTo(0.5625, 1);
    model.destroy();
  });
});

describe('a frozen (forward-only) fine-tuned classifier', () => {
  it('gives the trainable classifier\'s logits, loss and predictions bit for bit on the same weights (full and partial batches)', async () => {
    const gpu = await testGpu();
    // Depth 3: the frozen blocks' outputs alternate out0 → out1 → out0.
    const cfg = tiny({ depth: 3 });
    const [N, K, eps] = [5, 4, 0.1];
    const params = perturbedParams(finetuneParamLayout(cfg, K), cfg, 3);
    const trainable = new Classifier(gpu, cfg, { mode: 'finetune', numClasses: K, batch: N, labelSmoothing: eps });
    const frozen = new Classifier(gpu, cfg, { mode: 'finetune', numClasses: K, batch: N, labelSmoothing: eps, frozen: true });
    expect(frozen.frozen).toBe(true);
    expect(trainable.frozen).toBe(false);
    const imgs = Float32Array.from(randn(N * cfg.inChans * cfg.imgSize ** 2, 12));
    const labels = Uint32Array.from([3, 0, 1, 2, 1]);
    for (const m of [trainable, frozen]) m.uploadParams(params);
    for (const n of [N, 2]) {
      const out: { logits: Float32Array; stats: Float32Array; pred: Uint32Array }[] = [];
      for (const m of [trainable, frozen]) {
        m.setBatch(imgs, labels, n);
        await run(gpu, (rec) => m.recordForward(rec, n, false));
        const s = await m.readStats();
        out.push({ logits: await m.readLogits(n), stats: Float32Array.of(s.loss, s.correct), pred: await m.readPred(n) });
      }
      expectSameBits(out[1].logits, out[0].logits, `logits (n = ${n})`);
      expectSameBits(out[1].stats, out[0].stats, `[loss, correct] (n = ${n})`);
      expect(Array.from(out[1].pred)).toEqual(Array.from(out[0].pred));
    }
    // …and predictAll over a loader, as evaluate --method head and the KD teacher use it.
    const ds = blobs(K, 6, cfg.imgSize, 2, { C: 3 });
    const [a, b] = [await predictAll(trainable, new DataLoader(ds, { split: 'val', batchSize: N, seed: 1 })), await predictAll(frozen, new DataLoader(ds, { split: 'val', batchSize: N, seed: 1 }))];
    expect(Array.from(b.pred)).toEqual(Array.from(a.pred));
    expect(b.loss).toBe(a.loss);
    trainable.destroy();
    frozen.destroy();
  });

  it('holds its weights and one block\'s activations only: ViT-Tiny (32×32×3, p 4) at batch 4 takes > 4× less memory than a trainable one', async () => {
    const gpu = await testGpu();
    const cfg = maeConfig('vit-tiny', { imgSize: 32, patchSize: 4, inChans: 3 });
    const o = { mode: 'finetune', numClasses: 10, batch: 4 } as const;
    const trainable = new Classifier(gpu, cfg, o);
    const frozen = new Classifier(gpu, cfg, { ...o, frozen: true });
    expect(frozen.dacts).toBeNull();
    expect(frozen.blockArenas).toHaveLength(1);
    expect(trainable.blockArenas).toHaveLength(cfg.depth);
    // Exactly: the weights, the stem/head activations and one shared block set (two outputs).
    expect(frozen.memoryBytes).toBe(frozen.params.layout.bytes + frozen.acts.layout.bytes + frozen.blockArenas[0].layout.bytes);
    // The trainable one: 4 copies of the table (weights, gradients, 2 moments), 12 blocks' saved
    // activations, the activation gradients: 123.4 MiB against 24.4 MiB here (ratio 5.06; at batch 16,
    // 247.9 against 36.1 MiB, 6.9×; ViT-Small at batch 16, 657.2 against 112.3 MiB, 5.9×).
    const ratio = trainable.memoryBytes / frozen.memoryBytes;
    expect(ratio, `trainable ${(trainable.memoryBytes / 2 ** 20).toFixed(1)} MiB / frozen ${(frozen.memoryBytes / 2 ** 20).toFixed(1)} MiB`).toBeGreaterThan(4);
    trainable.destroy();
    frozen.destroy();
  });

  it('refuses to train, with a message that says why; frozen applies to fine-tuning only and never to a distilling student', async () => {
    const gpu = await testGpu();
    const cfg = tiny();
    const model = new Classifier(gpu, cfg, { mode: 'finetune', numClasses: 3, batch: 2, frozen: true });
    model.uploadParams(initFinetuneParams(cfg, 3, null, 1));
    const rec = new Recorder(gpu);
    const built = /built frozen \(forward only: a teacher or an evaluator\).*cannot be trained/;
    expect(() => model.recordTrainStep(rec, { lr: 1e-3, step: 1 })).toThrow(built);
    expect(() => model.recordBackward(rec, 2)).toThrow(/Classifier\.recordBackward: this classifier was built frozen/);
    expect(() => model.recordZeroGrads(rec)).toThrow(built);
    expect(() => model.recordOptimizer(rec, { lr: 1e-3, step: 1 })).toThrow(built);
    expect(() => model.resetOptimizer()).toThrow(built);
    expect(() => model.grads).toThrow(built);
    expect(() => model.adamM).toThrow(built);
    await expect(model.readGrads()).rejects.toThrow(built);
    rec.discard();
    const ds = blobs(3, 4, cfg.imgSize, 1, { C: 3 });
    await expect(trainClassifier(model, new DataLoader(ds, { split: 'train', batchSize: 2, seed: 1, augment: false }), { steps: 1, lr: 1e-3 })).rejects.toThrow(built);
    // Nothing was recorded by the refusals: the frozen model still runs forward.
    model.setBatch(Float32Array.from(randn(2 * 3 * 64, 1)), [0, 1], 2);
    await run(gpu, (r) => model.recordForward(r, 2, false));
    expect((await model.readLogits(2)).every(Number.isFinite)).toBe(true);
    expect(() => new Classifier(gpu, cfg, { mode: 'linprobe', numClasses: 3, batch: 2, frozen: true })).toThrow(/needs mode 'finetune', not 'linprobe'/);
    expect(() => new Classifier(gpu, cfg, { mode: 'finetune', numClasses: 3, batch: 2, frozen: true, distill: { temperature: 2, softWeight: 0.5 } })).toThrow(/cannot be frozen/);
    model.destroy();
  });
});

describe('known answers', () => {

  it('a linearly separable toy set reaches ~100 % with the linear probe and with k-NN (random encoder)', async () => {
    const gpu = await testGpu();
    const cfg = tiny({ inChans: 1, embedDim: 16 });
    const K = 4;
    const ds = blobs(K, 24, 8, 3);
    const enc = initParams(encoderParamLayout(cfg), cfg.imgSize / cfg.patchSize, 5);
    const model = new Classifier(gpu, cfg, { mode: 'linprobe', numClasses: K, batch: 16, pool: 'cls' });
    model.uploadEncoder(enc);
    const h = initHead(K, cfg.embedDim, 0.01, 1);
    model.uploadParams(new Map([['head.weight', h.weight], ['head.bias', h.bias]]));
    const train = new DataLoader(ds, { split: 'train', batchSize: 16, seed: 1, augment: false });
    await trainClassifier(model, train, { steps: 60, lr: 3e-2, weightDecay: 0 });
    const val = new DataLoader(ds, { split: 'val', batchSize: 16, seed: 1 });
    const r = await predictAll(model, val);
    const m = classificationMetrics(r.pred, r.labels, K, ds.classNames);
    expect(m.accuracy, `linear probe accuracy (confusion ${JSON.stringify(m.confusion)})`).toBeGreaterThanOrEqual(0.98);

    const bank = await extractFeatures(model, new DataLoader(ds, { split: 'train', batchSize: 16, seed: 1, augment: false, shuffle: false, dropLast: false }));
    const q = await extractFeatures(model, new DataLoader(ds, { split: 'val', batchSize: 16, seed: 1 }));
    const pred = await knnPredict(gpu, bank.features, bank.labels, q.features, cfg.embedDim, K, { k: 5 });
    expect(classificationMetrics(pred, q.labels, K).accuracy, 'k-NN accuracy').toBeGreaterThanOrEqual(0.98);

    // The probe on cached features (what the CLI does): a fresh head and BatchNorm reach the same.
    model.uploadParams(new Map([['head.weight', h.weight], ['head.bias', h.bias]]));
    model.resetOptimizer();
    model.resetRunningStats();
    await trainProbeOnFeatures(model, bank, { steps: 60, lr: 3e-2, weightDecay: 0, seed: 4 });
    const r2 = await predictFeatures(model, q);
    expect(classificationMetrics(r2.pred, r2.labels, K).accuracy, 'linear probe on cached features').toBeGreaterThanOrEqual(0.98);
    model.destroy();
  });

  it('a random encoder on random labels gives k-NN accuracy near chance', async () => {
    const gpu = await testGpu();
    const cfg = tiny({ inChans: 1, embedDim: 16 });
    const K = 4, N = 480;
    const r = rng(11);
    const images = Uint8Array.from({ length: N * 64 }, () => Math.floor(256 * r()));
    const labels = Int32Array.from({ length: N }, () => Math.floor(K * r()));
    const ds = makeDataset({ name: 'noise', source: 'test', images, labels, classNames: ['a', 'b', 'c', 'd'], N, C: 1, H: 8, W: 8, nTrain: 240 });
    const model = new Classifier(gpu, cfg, { mode: 'linprobe', numClasses: K, batch: 64, pool: 'mean' });
    model.uploadEncoder(initParams(encoderParamLayout(cfg), 2, 9));
    const bank = await extractFeatures(model, new DataLoader(ds, { split: 'train', batchSize: 64, seed: 1, augment: false, shuffle: false, dropLast: false }));
    const q = await extractFeatures(model, new DataLoader(ds, { split: 'val', batchSize: 64, seed: 1 }));
    const acc = classificationMetrics(await knnPredict(gpu, bank.features, bank.labels, q.features, cfg.embedDim, K), q.labels, K).accuracy;
    // Chance is 0.25; with 240 queries the standard deviation is about 0.028.
    expect(acc).toBeGreaterThan(0.13);
    expect(acc).toBeLessThan(0.37);
    model.destroy();
  });

  it('fine-tuning a tiny ViT from scratch on 3 easy shape classes (16×16) beats chance clearly', { timeout: 120_000 }, async () => {
    const gpu = await testGpu();
    const cfg = maeConfig('test', { imgSize: 16, patchSize: 4, inChans: 1 }, { embedDim: 32, depth: 2, numHeads: 2 });
    const all = makeShapesDataset({ n: 1400, size: 16, channels: 1, seed: 3 });
    // circle, cross, stripes: keep those classes, relabelled 0..2.
    const keep = [0, 4, 5];
    const HW = 16 * 16;
    const idx = [...all.labels!.keys()].filter((i) => keep.includes(all.labels![i]));
    const nTrain = idx.filter((i) => i < all.nTrain).length;
    const images = new Uint8Array(idx.length * HW), labels = new Int32Array(idx.length);
    idx.forEach((i, j) => {
      images.set(all.images.subarray(i * HW, (i + 1) * HW), j * HW);
      labels[j] = keep.indexOf(all.labels![i]);
    });
    const ds = makeDataset({ name: 'shapes-3', source: 'test', images, labels, classNames: ['circle', 'cross', 'stripes'], N: idx.length, C: 1, H: 16, W: 16, nTrain });
    const model = new Classifier(gpu, cfg, { mode: 'finetune', numClasses: 3, batch: 32, labelSmoothing: 0.1 }, 0.75);
    model.uploadParams(initFinetuneParams(cfg, 3, null, 1));
    const losses: number[] = [];
    await trainClassifier(model, new DataLoader(ds, { split: 'train', batchSize: 32, seed: 2, augment: false }), {
      steps: 80, lr: 2e-3, warmupSteps: 5, onStep: (m) => losses.push(m.loss), logEvery: 10,
    });
    const r = await predictAll(model, new DataLoader(ds, { split: 'val', batchSize: 32, seed: 1 }));
    const m = classificationMetrics(r.pred, r.labels, 3, ds.classNames);
    expect(losses[losses.length - 1], `loss went down (${losses.map((l) => l.toFixed(3)).join(' ')})`).toBeLessThan(losses[0]);
    expect(m.accuracy, `validation accuracy (confusion ${JSON.stringify(m.confusion)})`).toBeGreaterThan(0.6);
    model.destroy();
  });
});

describe('k-NN vote and metrics (known answers)', () => {
  it('knnVote: weighted by exp(sim/T), k nearest only; T = 0 is a plain majority', () => {
    const sims = [0.9, 0.1, 0.89, 0.2, 0.88];
    const labels = [0, 1, 1, 1, 1];
    // k = 1: the nearest (0.9) is class 0.
    expect(knnVote(sims, labels, 2, 1, 0.07)).toBe(0);
    // k = 3: 0.9 (class 0) vs 0.89 + 0.88 (class 1): class 1 wins with either weighting.
    expect(knnVote(sims, labels, 2, 3, 0.07)).toBe(1);
    // A much closer single neighbour outweighs two far ones at a low temperature, not in a majority vote.
    const s2 = [0.99, 0.2, 0.2], l2 = [0, 1, 1];
    expect(knnVote(s2, l2, 2, 3, 0.07)).toBe(0);
    expect(knnVote(s2, l2, 2, 3, 0)).toBe(1);
  });

  it('classificationMetrics: accuracy, per-class accuracy and confusion[true][pred]', () => {
    const m = classificationMetrics([0, 1, 1, 2, 2, 0], [0, 1, 2, 2, 2, 1], 4, ['a', 'b', 'c', 'd']);
    expect(m.accuracy).toBeCloseTo(4 / 6, 12);
    expect(m.confusion).toEqual([[1, 0, 0, 0], [1, 1, 0, 0], [0, 1, 2, 0], [0, 0, 0, 0]]);
    expect(m.perClass.map((c) => c.accuracy)).toEqual([1, 0.5, 2 / 3, null]);
    expect(m.perClass.map((c) => c.count)).toEqual([1, 2, 3, 0]);
  });

  it('a Recorder-free check of the frozen encoder: recordFeatures refuses the fine-tuning model', async () => {
    const gpu = await testGpu();
    const model = new Classifier(gpu, tiny(), { mode: 'finetune', numClasses: 2, batch: 2 });
    expect(() => model.recordFeatures(new Recorder(gpu), 2)).toThrow(/fine-tuning/);
    model.destroy();
  });
});
