/**
 * Weights out: what leaves the studio for PyTorch and timm.
 *
 *   exportFull   every tensor of the MAE (DMAE: plus aligned_feature_projection_heads.{k}.*) under
 *                the reference names of recipe §6, PyTorch layouts (Linear (out, in), conv
 *                (D, C, p, p)), F32 safetensors; the model's description also rides in the file's
 *                __metadata__ (key "dmae_studio"), so the file alone can be imported again
 *   exportTimm   the encoder alone as a timm VisionTransformer (num_classes 0, global_pool 'token':
 *                cls_token, pos_embed, patch_embed.proj.*, blocks.{i}.*, norm.*), with a timm-style
 *                config.json (architecture, model_args, pretrained_cfg with mean/std)
 *   continueTrainingText   the torchrun command line that carries the run on with the reference
 *                PyTorch code (MAE's main_pretrain.py, DMAE's main_distill.py)
 *
 * Pure: byte arrays and JSON, no file system (the studio offers the same files for download).
 */
import { ArenaLayout } from '../gpu/buffers';
import { type DistillConfig, type MaeConfig } from '../engine/config';
import type { ParamMap } from '../engine/init';
import { addEncoderParams, addProjectionParams, maeParamLayout } from '../engine/params';
import { writeSafetensors } from './safetensors';

/** A model as the studio knows it: its description and its parameters (timm names, table shapes). */
export interface ModelDescription {
  mode: 'mae' | 'dmae';
  /** The MAE (for DMAE: the student). */
  config: MaeConfig;
  /** DMAE: the teacher's configuration and the aligned pairs (the heads' shapes depend on them). */
  teacher?: MaeConfig | null;
  distill?: DistillConfig | null;
  /** Optimiser steps the parameters have seen. */
  step?: number;
}

/** The JSON that describes a full export (config.json beside the file, and its __metadata__). */
export interface FullModelJson extends ModelDescription {
  format: typeof MODEL_FORMAT;
  version: 1;
  /** What each name means, for a reader who has never seen the studio. */
  names: string;
  /** Input normalisation the model was trained with (per channel), when known. */
  mean?: number[];
  std?: number[];
}

export const MODEL_FORMAT = 'dmae-studio-model';
/** The __metadata__ key holding the FullModelJson of a full export. */
export const MODEL_METADATA_KEY = 'dmae_studio';

/** The table of every tensor a full export holds, in file order. */
export function fullLayout(m: ModelDescription): ArenaLayout {
  const layout = maeParamLayout(m.config);
  if (m.mode === 'dmae') {
    if (!m.teacher || !m.distill) throw new Error('exportFull: a DMAE model needs its teacher configuration and distillation pairs.');
    addProjectionParams(layout, m.config.embedDim, m.teacher.embedDim, m.distill.pairs.length);
  }
  return layout;
}

/** The timm ViT's tensors: the whole encoder with its final norm. */
export function timmLayout(c: MaeConfig): ArenaLayout {
  const layout = new ArenaLayout();
  addEncoderParams(layout, c);
  return layout;
}

function tensorsOf(layout: ArenaLayout, params: ParamMap, what: string) {
  return layout.entries.map((e) => {
    const v = params.get(e.name);
    if (!v) throw new Error(`${what}: the parameters have no tensor "${e.name}".`);
    if (v.length !== e.length) throw new Error(`${what}: "${e.name}" has ${v.length} values; shape [${e.shape.join(', ')}] needs ${e.length}.`);
    return { name: e.name, shape: e.shape, data: v };
  });
}

export const NAMES_NOTE =
  'MAE reference names (models_mae.py / timm ViT): patch_embed.proj (Conv2d weight (D, C, p, p)), cls_token (1,1,D), ' +
  'pos_embed (1,1+L,D) fixed 2-D sin-cos, blocks.{i}.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}, norm; decoder_embed, ' +
  'mask_token (1,1,Dd), decoder_pos_embed, decoder_blocks.{i}.*, decoder_norm, decoder_pred; DMAE: aligned_feature_projection_heads.{k} ' +
  '(Linear student width -> teacher width). Linear weights are (out, in). LayerNorm eps 1e-6, exact erf GELU, qkv with bias.';

/** The full model as F32 safetensors with reference names, and the JSON that describes it. */
export function exportFull(m: ModelDescription, params: ParamMap, norm?: { mean: number[]; std: number[] }): { file: Uint8Array; config: FullModelJson } {
  const config: FullModelJson = {
    format: MODEL_FORMAT, version: 1, mode: m.mode, config: m.config, teacher: m.teacher ?? null, distill: m.distill ?? null,
    step: m.step ?? 0, names: NAMES_NOTE, ...(norm ? { mean: norm.mean, std: norm.std } : {}),
  };
  const file = writeSafetensors(tensorsOf(fullLayout(m), params, 'exportFull'), { format: 'pt', [MODEL_METADATA_KEY]: JSON.stringify(config) });
  return { file, config };
}

/**
 * A registered timm model name of about this width (timm.create_model rejects unknown names);
 * config.json's model_args override every size, patch and image size of it (timm passes them
 * to the entry point as keyword arguments).
 */
export function timmArchitecture(c: MaeConfig): string {
  const size = c.embedDim <= 192 ? 'tiny' : c.embedDim <= 384 ? 'small' : c.embedDim <= 768 ? 'base' : 'large';
  return `vit_${size}_patch16_224`;
}

/** A timm-style config.json (what timm.create_model('hf-hub:…') and HF's timm integration read). */
export interface TimmConfigJson {
  architecture: string;
  num_classes: 0;
  num_features: number;
  global_pool: 'token';
  model_args: {
    img_size: number; patch_size: number; in_chans: number; embed_dim: number; depth: number; num_heads: number;
    mlp_ratio: number; qkv_bias: true; class_token: true; global_pool: 'token'; num_classes: 0; fc_norm: false;
  };
  pretrained_cfg: {
    tag: string; custom_load: false; input_size: [number, number, number]; fixed_input_size: true; interpolation: 'bicubic';
    crop_pct: number; crop_mode: 'center'; mean: number[]; std: number[]; num_classes: 0; pool_size: null;
    first_conv: 'patch_embed.proj'; classifier: 'head'; license?: string;
  };
  /** Not timm's: how the weights came to be. */
  dmae_studio: { mode: 'mae' | 'dmae'; step: number; layer_norm_eps: 1e-6; pos_embed: 'fixed 2-D sin-cos (MAE)'; pretraining: string };
}

/**
 * The encoder alone as a timm ViT: safetensors with timm's names and a config.json. Loads with
 * strict=True into timm.models.vision_transformer.VisionTransformer(img_size, patch_size,
 * in_chans, embed_dim, depth, num_heads, mlp_ratio, qkv_bias=True, class_token=True,
 * global_pool='token', num_classes=0, norm_layer=partial(nn.LayerNorm, eps=1e-6)).
 * `mean`/`std`: the per-channel input normalisation the model was trained with.
 */
export function exportTimm(m: ModelDescription, params: ParamMap, norm: { mean: number[]; std: number[] }): { file: Uint8Array; config: TimmConfigJson } {
  const c = m.config;
  if (norm.mean.length !== c.inChans || norm.std.length !== c.inChans) throw new Error(`exportTimm: mean/std need ${c.inChans} values (one per input channel).`);
  const file = writeSafetensors(tensorsOf(timmLayout(c), params, 'exportTimm'), { format: 'pt' });
  const config: TimmConfigJson = {
    architecture: timmArchitecture(c),
    num_classes: 0,
    num_features: c.embedDim,
    global_pool: 'token',
    model_args: {
      img_size: c.imgSize, patch_size: c.patchSize, in_chans: c.inChans, embed_dim: c.embedDim, depth: c.depth, num_heads: c.numHeads,
      mlp_ratio: c.mlpRatio, qkv_bias: true, class_token: true, global_pool: 'token', num_classes: 0, fc_norm: false,
    },
    pretrained_cfg: {
      tag: m.mode === 'dmae' ? 'dmae_studio_distilled' : 'dmae_studio_mae', custom_load: false,
      input_size: [c.inChans, c.imgSize, c.imgSize], fixed_input_size: true, interpolation: 'bicubic', crop_pct: 1, crop_mode: 'center',
      mean: norm.mean, std: norm.std, num_classes: 0, pool_size: null, first_conv: 'patch_embed.proj', classifier: 'head',
    },
    dmae_studio: {
      mode: m.mode, step: m.step ?? 0, layer_norm_eps: 1e-6, pos_embed: 'fixed 2-D sin-cos (MAE)',
      pretraining: m.mode === 'dmae' ? 'DMAE: MAE pixel loss + L_dist to a frozen MAE teacher' : 'MAE (masked autoencoder) pretraining',
    },
  };
  return { file, config };
}

/** The hyperparameters of a run that the reference PyTorch code takes (a ResolvedTrainConfig fits). */
export interface RunHyperparameters {
  mode: 'mae' | 'dmae';
  model: MaeConfig;
  teacher?: MaeConfig | null;
  distill?: DistillConfig | null;
  batch: number;
  accumSteps: number;
  /** Peak lr actually used, and the base lr it came from (null when an absolute lr was given). */
  lr: number;
  baseLr: number | null;
  minLr: number;
  warmupSteps: number;
  totalSteps: number;
  weightDecay: number;
  maskRatio: number;
  seed: number;
}

const modelName = (c: MaeConfig): string => `mae_vit_d${c.embedDim}x${c.depth}_patch${c.patchSize}_img${c.imgSize}_dec${c.decoderEmbedDim}d${c.decoderDepth}b`;

function constructorSnippet(c: MaeConfig): string {
  const cls = 'MaskedAutoencoderViT';
  return (
    `def ${modelName(c)}(**kwargs):\n` +
    `    kwargs.pop('img_size', None)\n` +
    `    return ${cls}(img_size=${c.imgSize}, patch_size=${c.patchSize}, in_chans=${c.inChans}, embed_dim=${c.embedDim}, depth=${c.depth}, num_heads=${c.numHeads},\n` +
    `        decoder_embed_dim=${c.decoderEmbedDim}, decoder_depth=${c.decoderDepth}, decoder_num_heads=${c.decoderNumHeads},\n` +
    `        mlp_ratio=${c.mlpRatio}, norm_layer=partial(nn.LayerNorm, eps=1e-6), **kwargs)\n`
  );
}

/**
 * The text that tells a user how to continue this run on GPUs with the reference code: how to
 * turn the exported safetensors into the .pth that `--resume` loads, the model constructor to
 * register for the studio's sizes, and the torchrun command with the run's hyperparameters.
 * `stepsPerEpoch` (the user's dataset size / effective batch) converts the studio's step
 * schedule into the reference's epochs; without it the epochs are left as placeholders.
 */
export function continueTrainingText(run: RunHyperparameters, opts: { weightsFile: string; stepsDone?: number; stepsPerEpoch?: number; gpus?: number }): string {
  const c = run.model;
  const gpus = opts.gpus ?? 1;
  const spe = opts.stepsPerEpoch;
  const ep = (steps: number) => (spe ? String(Math.max(1, Math.round(steps / spe))) : `<${steps} steps / steps per epoch>`);
  const lrFlag = run.baseLr !== null ? `--blr ${run.baseLr}` : `--lr ${run.lr}`;
  const pth = opts.weightsFile.replace(/\.safetensors$/, '') + '.pth';
  const dmae = run.mode === 'dmae' && run.teacher && run.distill;
  const lines: string[] = [];
  lines.push(`# Continue this ${dmae ? 'DMAE distillation' : 'MAE pretraining'} with the reference PyTorch code on GPUs.`);
  lines.push(`# Weights: ${opts.weightsFile} (full export, reference names). Steps done here: ${opts.stepsDone ?? 'unknown'} of ${run.totalSteps}.`);
  lines.push('');
  lines.push('# 1. The reference code resumes from a torch .pth holding {"model": state_dict} (needs `pip install safetensors`):');
  lines.push(`python -c "import torch; from safetensors.torch import load_file; torch.save({'model': load_file('${opts.weightsFile}')}, '${pth}')"`);
  if (dmae) lines.push("#    (for main_distill.py the student's keys stay as they are: the projection heads are aligned_feature_projection_heads.{k}.*)");
  lines.push('');
  lines.push(`# 2. Register the studio's model size (${dmae ? 'models_mae_distill.py of UCSC-VLAA/DMAE' : 'models_mae.py of facebookresearch/mae'}):`);
  for (const l of constructorSnippet(c).trimEnd().split('\n')) lines.push(`#   ${l}`);
  if (dmae) for (const l of constructorSnippet(run.teacher!).trimEnd().split('\n')) lines.push(`#   ${l}`);
  lines.push('');
  lines.push('# 3. Train (ImageFolder at <data>/train; images resized to --input_size):');
  const perGpu = Math.max(1, Math.round(run.batch / gpus));
  const common = [
    `--batch_size ${perGpu}`, `--accum_iter ${run.accumSteps}`, `--input_size ${c.imgSize}`, `--mask_ratio ${+run.maskRatio.toFixed(6)}`,
    ...(c.normPixLoss ? ['--norm_pix_loss'] : []), lrFlag, `--min_lr ${run.minLr}`, `--weight_decay ${run.weightDecay}`,
    `--epochs ${ep(run.totalSteps)}`, `--warmup_epochs ${ep(run.warmupSteps)}`, `--seed ${run.seed}`, `--resume ${pth}`,
    `--start_epoch ${opts.stepsDone !== undefined ? ep(opts.stepsDone) : '<epochs done>'}`,
    '--data_path <data>', '--output_dir ./output_dir', '--log_dir ./output_dir',
  ];
  if (dmae) {
    const d = run.distill!;
    lines.push(`torchrun --nproc_per_node=${gpus} main_distill.py \\`);
    const flags = [
      `--model ${modelName(c)}`, `--model_teacher ${modelName(run.teacher!)}`, '--teacher_model_path <teacher.pth>', ...common,
      "--student_reconstruction_target 'original_img'",
      `--aligned_blks_indices ${d.pairs.map((p) => p.studentBlock).join(' ')}`,
      `--teacher_aligned_blks_indices ${d.pairs.map((p) => p.teacherBlock).join(' ')}`,
      `--embedding_distillation_func ${d.kind === 'l1' ? 'L1' : 'L2'}`,
      `--aligned_feature_projection_dim ${c.embedDim} ${run.teacher!.embedDim}`,
    ];
    lines.push(flags.map((f) => `    ${f}`).join(' \\\n'));
  } else {
    lines.push(`torchrun --nproc_per_node=${gpus} main_pretrain.py \\`);
    lines.push([`--model ${modelName(c)}`, ...common].map((f) => `    ${f}`).join(' \\\n'));
  }
  lines.push('');
  lines.push('# Notes and assumptions:');
  lines.push(`# - The effective batch is batch_size × accum_iter × GPUs = ${perGpu * run.accumSteps * gpus} (here: ${run.batch} × ${run.accumSteps}); with more GPUs lower --batch_size to keep it, or keep --blr and let the lr scale.`);
  lines.push('# - The reference schedules in epochs (warmup, then half-cosine to --min_lr, per iteration); the studio schedules in steps,');
  lines.push('#   converted here with the steps per epoch. --start_epoch puts the schedule where this run stopped.');
  lines.push('# - A .pth converted from safetensors holds no optimizer state: AdamW moments restart at zero (MAE util/misc.py load_model loads');
  lines.push('#   the optimizer only when the checkpoint has one). Data order and masking noise differ from the studio\'s, so the run continues');
  lines.push('#   the same optimisation, not the same bits.');
  lines.push('# - The reference normalises inputs with ImageNet mean/std and reads 3-channel images; a 1-channel model needs its in_chans and a grayscale transform.');
  if (dmae) {
    lines.push('# - DMAE flags are those of UCSC-VLAA/DMAE pretrain.sh / main_distill.py (which asserts timm 0.3.2). The distillation weight α is not');
    lines.push(`#   a flag there (the recipe: α = 1 in the reference); this run used α = ${run.distill!.alpha}.`);
  }
  lines.push('# Assumptions (not read from the reference code): the model constructor names above (ours; register them as shown)');
  lines.push(dmae ? "#   and that misc.load_model_teacher reads a .pth of the form {'model': teacher state_dict} (as MAE's own checkpoints are)." : '#   — every flag is one main_pretrain.py defines.');
  return lines.join('\n') + '\n';
}
