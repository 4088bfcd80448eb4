import { describe, expect, it } from 'vitest';
import { maeConfig, defaultDistillConfig, type MaeConfig } from '../../src/engine/config';
import { dmaeStudentLayout } from '../../src/engine/dmae';
import { initParams, type ParamMap } from '../../src/engine/init';
import { maeParamLayout } from '../../src/engine/params';
import { continueTrainingText, exportFull, exportTimm, timmLayout } from '../../src/io/export';
import { ImportError, importStudioModel, importTeacher } from '../../src/io/import';
import { readSafetensors, writeSafetensors, type TensorToWrite } from '../../src/io/safetensors';

const geo = { imgSize: 16, patchSize: 4, inChans: 3 };
const cfg = maeConfig('test', geo);
const teacherCfg: MaeConfig = { ...maeConfig('test', geo), embedDim: 64, depth: 3, numHeads: 4 };
const norm = { mean: [0.5, 0.4, 0.3], std: [0.2, 0.25, 0.3] };

function expectSame(got: ParamMap, want: ParamMap, names?: string[]): void {
  const ns = names ?? [...want.keys()];
  expect([...got.keys()].sort()).toEqual([...ns].sort());
  for (const n of ns) expect(got.get(n), n).toEqual(want.get(n));
}

/** A safetensors file of `params` with names prefixed / filtered / in another dtype. */
function fileOf(params: ParamMap, shapes: Map<string, number[]>, opts: { prefix?: string; dtype?: TensorToWrite['dtype']; drop?: string[]; extra?: TensorToWrite[] } = {}): Uint8Array {
  const ts: TensorToWrite[] = [];
  for (const [n, v] of params) if (!opts.drop?.includes(n)) ts.push({ name: (opts.prefix ?? '') + n, shape: shapes.get(n)!, data: v, dtype: opts.dtype });
  return writeSafetensors([...ts, ...(opts.extra ?? [])]);
}

describe('full export → import', () => {
  it('MAE: identical tensors and configuration, reference names and PyTorch layouts', () => {
    const layout = maeParamLayout(cfg);
    const params = initParams(layout, cfg.imgSize / cfg.patchSize, 7);
    const { file, config } = exportFull({ mode: 'mae', config: cfg, step: 12 }, params, norm);
    const st = readSafetensors(file);
    expect(st.tensors.get('patch_embed.proj.weight')!.shape).toEqual([32, 3, 4, 4]);
    expect(st.tensors.get('decoder_pred.weight')!.shape).toEqual([48, 32]);
    expect(st.tensors.get('blocks.1.attn.qkv.weight')!.shape).toEqual([96, 32]);
    expect(config.step).toBe(12);
    const back = importStudioModel(file, { file: 'mae.safetensors' });
    expectSame(back.params, params);
    expect(back.model).toEqual({ mode: 'mae', config: cfg, teacher: null, distill: null, step: 12 });
    expect(back.report.headsFrom).toMatch(/__metadata__/);
  });

  it('DMAE: the student with aligned_feature_projection_heads round-trips', () => {
    const d = defaultDistillConfig(cfg.depth, teacherCfg.depth);
    const layout = dmaeStudentLayout(cfg, teacherCfg, d);
    const params = initParams(layout, 4, 8);
    const { file } = exportFull({ mode: 'dmae', config: cfg, teacher: teacherCfg, distill: d, step: 3 }, params);
    expect(readSafetensors(file).tensors.get('aligned_feature_projection_heads.0.weight')!.shape).toEqual([64, 32]);
    const back = importStudioModel(file);
    expectSame(back.params, params);
    expect(back.model.mode).toBe('dmae');
    expect(back.model.teacher).toEqual(teacherCfg);
    expect(back.model.distill).toEqual(d);
    expect(back.report.projectionHeads).toBe(1);
  });
});

describe('timm export and teacher import', () => {
  const tLayout = maeParamLayout(teacherCfg);
  const tParams = initParams(tLayout, 4, 9);
  const shapes = new Map(tLayout.entries.map((e) => [e.name, e.shape]));
  const encNames = timmLayout(teacherCfg).entries.map((e) => e.name);

  it('the timm file holds exactly the encoder under timm names, with a timm config.json', () => {
    const { file, config } = exportTimm({ mode: 'mae', config: teacherCfg }, tParams, norm);
    expect([...readSafetensors(file).tensors.keys()]).toEqual(encNames);
    expect(encNames).toContain('norm.weight');
    expect(encNames.some((n) => n.startsWith('decoder') || n === 'mask_token')).toBe(false);
    expect(config.model_args).toMatchObject({ img_size: 16, patch_size: 4, in_chans: 3, embed_dim: 64, depth: 3, num_heads: 4, num_classes: 0, global_pool: 'token' });
    expect(config.pretrained_cfg.mean).toEqual(norm.mean);
    expect(config.architecture).toBe('vit_tiny_patch16_224'); // registered in timm; model_args carry the real sizes
    // import with its config.json: identical tensors, heads from the config
    const t = importTeacher(file, { file: 'vit.safetensors', configJson: config });
    expectSame(t.params, tParams, encNames);
    expect(t.config).toMatchObject({ embedDim: 64, depth: 3, numHeads: 4, imgSize: 16, patchSize: 4, inChans: 3 });
    expect(t.report.headsFrom).toMatch(/config\.json: 4 heads/);
  });

  it('without a config: heads by the ViT rule embed_dim/64, said so; a width not a multiple of 64 needs a config', () => {
    const t = importTeacher(fileOf(tParams, shapes), { file: 't.safetensors' });
    expect(t.config.numHeads).toBe(1);
    expect(t.report.headsFrom).toMatch(/standard ViT rule.*64\/64 = 1 heads.*cannot be read from shapes/);
    const small = initParams(maeParamLayout(cfg), 4, 1);
    const sShapes = new Map(maeParamLayout(cfg).entries.map((e) => [e.name, e.shape]));
    expect(() => importTeacher(fileOf(small, sShapes), { file: 's.safetensors' })).toThrow(/s\.safetensors: width 32 is not a multiple of 64.*config\.json with num_heads/);
    expect(importTeacher(fileOf(small, sShapes), { configJson: { num_heads: 2 } }).config.numHeads).toBe(2);
  });

  it('accepts module./model. prefixes, F16/BF16/F64, and a full MAE checkpoint (decoder dropped, classifier ignored)', () => {
    const cj = { model_args: { num_heads: 4 } };
    for (const prefix of ['module.', 'model.']) {
      const t = importTeacher(fileOf(tParams, shapes, { prefix }), { configJson: cj });
      expect(t.report.prefix).toBe(prefix);
      expectSame(t.params, tParams, encNames);
    }
    for (const dtype of ['F16', 'BF16', 'F64'] as const) {
      const t = importTeacher(fileOf(tParams, shapes, { dtype }), { configJson: cj });
      expect(t.report.dtypes[dtype]).toBe(tLayout.entries.length);
      const w = t.params.get('blocks.0.attn.qkv.weight')!, ref = tParams.get('blocks.0.attn.qkv.weight')!;
      const tol = dtype === 'F64' ? 0 : dtype === 'F16' ? 1e-3 : 8e-3;
      for (let i = 0; i < w.length; i++) expect(Math.abs(w[i] - ref[i])).toBeLessThanOrEqual(tol * Math.abs(ref[i]) + 1e-7);
    }
    const withHead = fileOf(tParams, shapes, { extra: [{ name: 'head.weight', shape: [10, 64], data: new Float32Array(640) }, { name: 'head.bias', shape: [10], data: new Float32Array(10) }] });
    const t = importTeacher(withHead, { configJson: cj });
    expect(t.report.hasDecoder).toBe(true);
    expect(t.report.ignored).toEqual(['head.weight', 'head.bias']);
    expectSame(t.params, tParams, encNames);
  });

  it('says exactly what is missing, unexpected or of the wrong shape', () => {
    const bad = new Map(tParams);
    bad.set('blocks.1.mlp.fc1.weight', new Float64Array(10 * 64));
    const bShapes = new Map(shapes);
    bShapes.set('blocks.1.mlp.fc1.weight', [10, 64]);
    const file = fileOf(bad, bShapes, { drop: ['blocks.2.norm1.bias', 'cls_token'], extra: [{ name: 'blocks.0.attn.extra', shape: [2], data: [1, 2] }] });
    let err: ImportError | undefined;
    try {
      importTeacher(file, { file: 'bad.safetensors', configJson: { num_heads: 4 } });
    } catch (e) {
      err = e as ImportError;
    }
    expect(err).toBeInstanceOf(ImportError);
    expect(err!.message).toMatch(/^bad\.safetensors: the tensors do not match/);
    expect(err!.message).toContain('missing 2: cls_token, blocks.2.norm1.bias');
    expect(err!.message).toContain('blocks.1.mlp.fc1.weight is [10, 64], expected [256, 64]');
    expect(err!.message).toContain('unexpected 1: blocks.0.attn.extra');
    expect(err!.report!.missing).toEqual(['cls_token', 'blocks.2.norm1.bias']);
    expect(() => importTeacher(writeSafetensors([{ name: 'x', shape: [1], data: [1] }]), { file: 'x.st' })).toThrow(/x\.st: no patch_embed\.proj\.weight.*not a ViT/);
  });
});

describe('continue-training text', () => {
  it('MAE and DMAE command lines carry the run hyperparameters', () => {
    const run = { mode: 'mae' as const, model: cfg, batch: 64, accumSteps: 2, lr: 7.5e-5, baseLr: 1.5e-4, minLr: 0, warmupSteps: 100, totalSteps: 1000, weightDecay: 0.05, maskRatio: 0.75, seed: 3 };
    const t = continueTrainingText(run, { weightsFile: 'run.safetensors', stepsDone: 400, stepsPerEpoch: 50 });
    for (const f of ['torchrun --nproc_per_node=1 main_pretrain.py', '--batch_size 64', '--accum_iter 2', '--blr 0.00015', '--mask_ratio 0.75', '--norm_pix_loss', '--epochs 20', '--warmup_epochs 2', '--weight_decay 0.05', '--resume run.pth', '--input_size 16']) expect(t).toContain(f);
    const d = defaultDistillConfig(cfg.depth, teacherCfg.depth);
    const td = continueTrainingText({ ...run, mode: 'dmae', teacher: teacherCfg, distill: d }, { weightsFile: 's.safetensors' });
    for (const f of ['main_distill.py', '--model_teacher', `--aligned_blks_indices ${d.pairs[0].studentBlock}`, `--teacher_aligned_blks_indices ${d.pairs[0].teacherBlock}`, '--embedding_distillation_func L1', '--aligned_feature_projection_dim 32 64', '<1000 steps / steps per epoch>']) expect(td).toContain(f);
  });
});

describe('Hugging Face ViTMAE names (a real MAE checkpoint converted by transformers)', () => {
  const c: MaeConfig = { ...maeConfig('test', geo), embedDim: 64, depth: 2, numHeads: 4, decoderEmbedDim: 32, decoderDepth: 1, decoderNumHeads: 2 };
  const layout = maeParamLayout(c);
  const params = initParams(layout, 4, 12);
  const shapes = new Map(layout.entries.map((e) => [e.name, e.shape]));

  /** convert_vit_mae_to_pytorch.py's renaming and qkv split, applied to our tensors. */
  function hfFile(encoderOnly: boolean): Uint8Array {
    const ts: TensorToWrite[] = [];
    const rename = (n: string): string => {
      const top: Record<string, string> = { cls_token: 'vit.embeddings.cls_token', pos_embed: 'vit.embeddings.position_embeddings', 'patch_embed.proj.weight': 'vit.embeddings.patch_embeddings.projection.weight', 'patch_embed.proj.bias': 'vit.embeddings.patch_embeddings.projection.bias', 'norm.weight': 'vit.layernorm.weight', 'norm.bias': 'vit.layernorm.bias' };
      if (top[n]) return top[n];
      if (/^(mask_token|decoder_pos_embed|decoder_embed|decoder_norm|decoder_pred)/.test(n)) return `decoder.${n}`;
      return n.replace(/^decoder_blocks\./, 'decoder.decoder_layers.').replace(/^blocks\./, 'vit.encoder.layer.').replace('norm1', 'layernorm_before').replace('norm2', 'layernorm_after')
        .replace('attn.proj', 'attention.output.dense').replace('mlp.fc1', 'intermediate.dense').replace('mlp.fc2', 'output.dense');
    };
    for (const [n, v] of params) {
      if (encoderOnly && /^(decoder|mask_token)/.test(n)) continue;
      const shape = shapes.get(n)!;
      if (n.includes('attn.qkv')) {
        const third = v.length / 3, base = rename(n.replace(/attn\.qkv\.(weight|bias)$/, 'X')).replace(/X$/, 'attention.attention.');
        const kind = n.endsWith('weight') ? 'weight' : 'bias';
        ['query', 'key', 'value'].forEach((q, i) => ts.push({ name: `${base}${q}.${kind}`, shape: [shape[0] / 3, ...shape.slice(1)], data: v.subarray(i * third, (i + 1) * third) }));
      } else ts.push({ name: rename(n), shape, data: v });
    }
    return writeSafetensors(ts);
  }
  const hfConfig = { model_type: 'vit_mae', hidden_size: 64, num_hidden_layers: 2, num_attention_heads: 4, decoder_num_attention_heads: 2, decoder_hidden_size: 32, image_size: 16, patch_size: 4, num_channels: 3, layer_norm_eps: 1e-12 };

  it('ViTMAEForPreTraining: every tensor back under MAE names, qkv joined, heads from its config, the eps difference said', () => {
    const m = importStudioModel(hfFile(false), { file: 'vit-mae.safetensors', configJson: hfConfig });
    expectSame(m.params, params);
    expect(m.model.config).toMatchObject({ embedDim: 64, depth: 2, numHeads: 4, decoderEmbedDim: 32, decoderDepth: 1, decoderNumHeads: 2 });
    expect(m.report.notes.join(' ')).toMatch(/Hugging Face ViTMAE names.*joined into qkv/);
    expect(m.report.notes.join(' ')).toMatch(/LayerNorm eps 1e-12/);
  });

  it('encoder only, as a teacher', () => {
    const t = importTeacher(hfFile(true), { configJson: hfConfig });
    expect(t.report.hasDecoder).toBe(false);
    expectSame(t.params, params, timmLayout(c).entries.map((e) => e.name));
  });
});
