/**
 * The studio's configuration form as plain data: every knob of a run in one flat object
 * (StudioConfig), the presets, what it becomes for the worker (toTrainSpec), its problems by
 * field (validated by the engine's own validators, whose messages are only sorted to the field
 * they name), and its compact form in the URL (only what differs from the preset) and in
 * localStorage. Pure: no React, no DOM beyond `URLSearchParams`.
 */
import { lenKeepFor } from '../../core/masking';
import { validateDistill, validateMaeConfig, type MaeConfig } from '../../engine/config';
import { validateSchedule } from '../../engine/schedule';
import type { DataSpec, ModelSpec, TrainSpec } from '../../protocol/train';

export type DatasetKey = `builtin:${'mnist' | 'shapes'}` | `stored:${string}`;

export interface StudioConfig {
  preset: PresetId;
  mode: 'mae' | 'dmae';
  dataset: DatasetKey;
  imgSize: number;
  patchSize: number;
  inChans: number;
  embedDim: number;
  depth: number;
  numHeads: number;
  decoderEmbedDim: number;
  decoderDepth: number;
  decoderNumHeads: number;
  normPixLoss: boolean;
  maskRatio: number;
  /** DMAE: student block kS and teacher block kT (0-based), α, L1/L2. */
  studentBlock: number;
  teacherBlock: number;
  alpha: number;
  distillKind: 'l1' | 'l2';
  batch: number;
  /**
   * Micro-batches per optimiser step (gradient accumulation, MAE's accum_iter): each step sums the
   * gradients of this many batches, so the effective batch is batch × accumSteps in less memory.
   */
  accumSteps: number;
  /** 'lr': `lr` is the absolute peak; 'blr': `lr` is MAE's base lr (peak = blr · effective batch / 256). */
  lrMode: 'lr' | 'blr';
  lr: number;
  warmupSteps: number;
  totalSteps: number;
  weightDecay: number;
  seed: number;
  /** The live k-NN monitor: every N steps (0 = off); a run option, not part of what is trained. */
  knnEvery: number;
  /** The monitor's bank of training images (its validation queries: a quarter as many). */
  knnImages: number;
  /** 'f32' (default), or 'mixed': f16 matmul operands with loss scaling; needs the adapter's shader-f16. */
  precision: 'f32' | 'mixed';
}

export type PresetId = 'tiny' | 'tiny-teacher' | 'tiny-dmae' | 'vit-tiny' | 'vit-small';

const TINY: StudioConfig = {
  preset: 'tiny', mode: 'mae', dataset: 'builtin:mnist', imgSize: 28, patchSize: 4, inChans: 1,
  embedDim: 32, depth: 2, numHeads: 2, decoderEmbedDim: 32, decoderDepth: 1, decoderNumHeads: 2, normPixLoss: true,
  maskRatio: 0.75, studentBlock: 1, teacherBlock: 2, alpha: 1, distillKind: 'l1',
  batch: 8, accumSteps: 1, lrMode: 'lr', lr: 2e-3, warmupSteps: 3, totalSteps: 60, weightDecay: 0.05, seed: 0, knnEvery: 0, knnImages: 1000, precision: 'f32',
};

export const PRESETS: Record<PresetId, { label: string; description: string; config: StudioConfig }> = {
  tiny: { label: 'Tiny MAE', description: '32-wide, 2 blocks: trains on MNIST in seconds, even on a software GPU.', config: TINY },
  'tiny-teacher': {
    label: 'Tiny teacher (MAE)', description: 'A larger MAE (64-wide, 4 blocks) to train first and distil from.',
    config: { ...TINY, preset: 'tiny-teacher', embedDim: 64, depth: 4, numHeads: 4 },
  },
  'tiny-dmae': {
    label: 'Tiny DMAE student', description: 'The tiny MAE distilled from a teacher trained here (choose it below).',
    config: { ...TINY, preset: 'tiny-dmae', mode: 'dmae', studentBlock: 1, teacherBlock: 2, maskRatio: 0.9 },
  },
  'vit-tiny': {
    label: 'ViT-Tiny', description: '192-wide, 12 blocks, 3 heads; decoder 128 × 2. Minutes on a real GPU.',
    config: { ...TINY, preset: 'vit-tiny', embedDim: 192, depth: 12, numHeads: 3, decoderEmbedDim: 128, decoderDepth: 2, decoderNumHeads: 4, batch: 64, lrMode: 'blr', lr: 1.5e-4, warmupSteps: 100, totalSteps: 2000, studentBlock: 8, teacherBlock: 8 },
  },
  'vit-small': {
    label: 'ViT-Small', description: '384-wide, 12 blocks, 6 heads; decoder 128 × 2. Needs a real GPU.',
    config: { ...TINY, preset: 'vit-small', embedDim: 384, depth: 12, numHeads: 6, decoderEmbedDim: 128, decoderDepth: 2, decoderNumHeads: 4, batch: 64, lrMode: 'blr', lr: 1.5e-4, warmupSteps: 100, totalSteps: 2000, studentBlock: 8, teacherBlock: 8 },
  },
};

export const DEFAULT_CONFIG: StudioConfig = PRESETS.tiny.config;

/** A preset applied to the current dataset (its geometry is the dataset's) and precision (the adapter's to allow). */
export function applyPreset(id: PresetId, current: StudioConfig): StudioConfig {
  const p = PRESETS[id].config;
  return {
    ...p, dataset: current.dataset, imgSize: current.imgSize, inChans: current.inChans, patchSize: current.imgSize % p.patchSize === 0 ? p.patchSize : current.patchSize,
    precision: current.precision ?? p.precision,
  };
}

/** The adapter feature mixed precision needs. */
export const MIXED_PRECISION_FEATURE = 'shader-f16';

/** Whether an adapter with these features can train in mixed precision; null when the adapter is not known yet. */
export const allowsMixed = (features: readonly string[] | null | undefined): boolean | null =>
  features ? features.includes(MIXED_PRECISION_FEATURE) : null;

export const patchesOf = (c: Pick<StudioConfig, 'imgSize' | 'patchSize'>): number =>
  c.patchSize > 0 && c.imgSize % c.patchSize === 0 ? (c.imgSize / c.patchSize) ** 2 : 0;

/** Visible patches per image at this mask ratio (the reference's truncation), or 0 for an impossible grid. */
export const visibleOf = (c: StudioConfig): number => (patchesOf(c) > 0 ? lenKeepFor(patchesOf(c), c.maskRatio) : 0);

export function modelSpecOf(c: StudioConfig): ModelSpec {
  return {
    imgSize: c.imgSize, patchSize: c.patchSize, inChans: c.inChans, embedDim: c.embedDim, depth: c.depth, numHeads: c.numHeads, mlpRatio: 4,
    decoderEmbedDim: c.decoderEmbedDim, decoderDepth: c.decoderDepth, decoderNumHeads: c.decoderNumHeads, normPixLoss: c.normPixLoss,
  };
}

/** What the worker is asked to train; `teacher` is the chosen teacher's model (DMAE). */
export function toTrainSpec(c: StudioConfig, teacher?: ModelSpec | null): TrainSpec {
  const spec: TrainSpec = {
    mode: c.mode, model: modelSpecOf(c), maskRatio: c.maskRatio, batch: c.batch,
    ...((c.accumSteps ?? 1) > 1 ? { accumSteps: c.accumSteps } : {}),
    ...(c.lrMode === 'lr' ? { lr: c.lr } : { baseLr: c.lr }),
    warmupSteps: c.warmupSteps, totalSteps: c.totalSteps, weightDecay: c.weightDecay, seed: c.seed,
    // (A form kept by an older studio has no precision: f32, the engine's default, left unsaid.)
    ...(c.precision === 'mixed' ? { precision: 'mixed' as const } : {}),
  };
  if (c.mode === 'dmae') {
    if (teacher) spec.teacher = teacher;
    spec.distill = { pairs: [{ studentBlock: c.studentBlock, teacherBlock: c.teacherBlock }], alpha: c.alpha, kind: c.distillKind };
  }
  return spec;
}

export function dataSpecOf(c: StudioConfig): DataSpec {
  return c.dataset.startsWith('builtin:')
    ? { kind: 'builtin', id: c.dataset.slice(8) as 'mnist' | 'shapes' }
    : { kind: 'stored', id: c.dataset.slice(7) };
}

/** The run options of the live k-NN monitor (none when it is off): its bank, and a quarter as many validation queries. */
export function knnOptionsOf(c: StudioConfig): { knnEvery?: number; knnBank?: number; knnQueries?: number } {
  const every = c.knnEvery ?? 0; // a form kept by an older studio has none: off
  if (!(every > 0)) return {};
  const bank = c.knnImages ?? 1000;
  return { knnEvery: every, knnBank: bank, knnQueries: Math.max(10, Math.round(bank / 4)) };
}

/** Images per optimiser step: the batch times the micro-batches (a form kept by an older studio has none: 1). */
export const effectiveBatch = (c: StudioConfig): number => c.batch * (c.accumSteps ?? 1);

/** Peak learning rate the run will use (after MAE's scaling by the effective batch in 'blr' mode). */
export const peakLr = (c: StudioConfig): number => (c.lrMode === 'lr' ? c.lr : (c.lr * effectiveBatch(c)) / 256);

// ---------------------------------------------------------------------------------------------
// Validation: the engine's validators, their messages sorted to the field they name
// ---------------------------------------------------------------------------------------------

export type FieldKey = keyof StudioConfig | 'teacher' | 'general';
export type Problems = Partial<Record<FieldKey, string[]>>;

/** Which field an engine message is about (first match wins). */
const FIELD_OF: [RegExp, FieldKey][] = [
  [/^image size \d+ is not a multiple of patch size/, 'patchSize'],
  [/^imgSize /, 'imgSize'],
  [/^patchSize /, 'patchSize'],
  [/^inChans |^input channels/, 'inChans'],
  [/^decoder width \d+ is not divisible/, 'decoderNumHeads'],
  [/^decoder width/, 'decoderEmbedDim'],
  [/^decoderEmbedDim /, 'decoderEmbedDim'],
  [/^decoderDepth /, 'decoderDepth'],
  [/^decoderNumHeads /, 'decoderNumHeads'],
  [/^width \d+ is not divisible/, 'numHeads'],
  [/^width /, 'embedDim'],
  [/^embedDim /, 'embedDim'],
  [/^depth /, 'depth'],
  [/^numHeads /, 'numHeads'],
  [/^student block/, 'studentBlock'],
  [/^teacher block/, 'teacherBlock'],
  [/^the teacher's (imgSize|patchSize|inChans)/, 'teacher'],
  [/^α /, 'alpha'],
  [/^lr /, 'lr'],
  [/^total steps/, 'totalSteps'],
  [/^warmup steps/, 'warmupSteps'],
];

function collect(into: Problems, fn: () => void, prefix?: string): void {
  try {
    fn();
  } catch (e) {
    const text = e instanceof Error ? e.message : String(e);
    // "Invalid model configuration: a; b; c." → a, b, c
    const body = text.replace(/^[^:]*:\s*/, '').replace(/\.$/, '');
    for (const part of body.split('; ')) {
      const field = FIELD_OF.find(([re]) => re.test(part))?.[1] ?? 'general';
      (into[field] ??= []).push(prefix ? `${prefix}: ${part}` : part);
    }
  }
}

const add = (p: Problems, f: FieldKey, m: string) => void (p[f] ??= []).push(m);

/**
 * Everything wrong with a configuration, by field; {} when it can be trained. The model, the
 * distillation and the schedule are checked by the engine's validators (validateMaeConfig,
 * validateDistill, validateSchedule); what those leave (batch, seed, the ratio's range, the
 * warmup within the run) is checked here as resolveTrainConfig would. With the adapter's
 * `features`, mixed precision on an adapter without shader-f16 is a problem too.
 */
export function validateConfig(c: StudioConfig, teacher?: ModelSpec | null, features?: readonly string[] | null): Problems {
  const p: Problems = {};
  const model = modelSpecOf(c) as MaeConfig;
  collect(p, () => validateMaeConfig(model));
  collect(p, () => validateSchedule({ lr: peakLr(c), minLr: 0, warmupSteps: c.warmupSteps, totalSteps: c.totalSteps }));
  if (!(c.lr > 0)) add(p, 'lr', 'the learning rate must be > 0');
  if (c.warmupSteps > c.totalSteps) add(p, 'warmupSteps', `warmup (${c.warmupSteps}) is longer than the run (${c.totalSteps} steps)`);
  if (!(Number.isInteger(c.batch) && c.batch >= 1)) add(p, 'batch', `batch ${c.batch} must be a positive integer`);
  if (!(Number.isInteger(c.accumSteps ?? 1) && (c.accumSteps ?? 1) >= 1)) add(p, 'accumSteps', `micro-batches ${c.accumSteps} must be a positive integer (1: none)`);
  if (!Number.isInteger(c.seed)) add(p, 'seed', `seed ${c.seed} must be an integer`);
  if (!(c.maskRatio >= 0 && c.maskRatio <= 0.98)) add(p, 'maskRatio', `mask ratio ${c.maskRatio} must be in [0, 0.98]`);
  if (!(c.weightDecay >= 0)) add(p, 'weightDecay', 'weight decay must be ≥ 0');
  // (A form kept by an older studio has no knnEvery: off.)
  if (!(Number.isInteger(c.knnEvery ?? 0) && (c.knnEvery ?? 0) >= 0)) add(p, 'knnEvery', `k-NN every ${c.knnEvery} steps must be a whole number ≥ 0 (0: off)`);
  if ((c.knnEvery ?? 0) > 0 && !(Number.isInteger(c.knnImages) && c.knnImages >= 20)) add(p, 'knnImages', `the k-NN bank of ${c.knnImages} images must be a whole number ≥ 20`);
  const precision = c.precision ?? 'f32';
  if (precision !== 'f32' && precision !== 'mixed') add(p, 'precision', `precision "${String(precision)}" must be f32 or mixed`);
  if (precision === 'mixed' && allowsMixed(features) === false) add(p, 'precision', `this adapter has no ${MIXED_PRECISION_FEATURE}, which mixed precision needs: choose f32`);
  if (c.mode === 'dmae') {
    if (!teacher) add(p, 'teacher', 'DMAE needs a teacher: train a larger MAE first (preset “Tiny teacher”), keep its weights, and choose it here; or import a weights file.');
    else collect(p, () => validateDistill(model, teacher as MaeConfig, { pairs: [{ studentBlock: c.studentBlock, teacherBlock: c.teacherBlock }], alpha: c.alpha, kind: c.distillKind }));
  }
  return p;
}

export const hasProblems = (p: Problems): boolean => Object.values(p).some((v) => v && v.length > 0);

// ---------------------------------------------------------------------------------------------
// URL and localStorage
// ---------------------------------------------------------------------------------------------

/** Short URL keys, one per field. */
const KEYS: Record<keyof StudioConfig, string> = {
  preset: 'p', mode: 'm', dataset: 'ds', imgSize: 'img', patchSize: 'ps', inChans: 'ch',
  embedDim: 'd', depth: 'L', numHeads: 'h', decoderEmbedDim: 'dd', decoderDepth: 'dL', decoderNumHeads: 'dh', normPixLoss: 'np',
  maskRatio: 'mr', studentBlock: 'ks', teacherBlock: 'kt', alpha: 'a', distillKind: 'dk',
  batch: 'b', accumSteps: 'acc', lrMode: 'lm', lr: 'lr', warmupSteps: 'w', totalSteps: 's', weightDecay: 'wd', seed: 'seed', knnEvery: 'knn', knnImages: 'kni',
  precision: 'pr',
};

/** The configuration as a compact query string: the preset, then only the fields that differ from it. */
export function encodeConfig(c: StudioConfig): string {
  const base = PRESETS[c.preset]?.config ?? DEFAULT_CONFIG;
  const q = new URLSearchParams();
  q.set(KEYS.preset, c.preset);
  for (const k of Object.keys(KEYS) as (keyof StudioConfig)[]) {
    if (k === 'preset' || c[k] === base[k]) continue;
    const v = c[k];
    q.set(KEYS[k], typeof v === 'boolean' ? (v ? '1' : '0') : String(v));
  }
  return q.toString();
}

/** Reads a configuration from a query string (unknown or malformed values fall back to the preset's); null when it holds none. */
export function decodeConfig(text: string): StudioConfig | null {
  const q = new URLSearchParams(text.replace(/^[#?]/, ''));
  const presetId = q.get(KEYS.preset) as PresetId | null;
  if (!presetId || !(presetId in PRESETS)) return null;
  const c: StudioConfig = { ...PRESETS[presetId].config };
  const out = c as unknown as Record<string, unknown>;
  for (const k of Object.keys(KEYS) as (keyof StudioConfig)[]) {
    const raw = q.get(KEYS[k]);
    if (raw === null || k === 'preset') continue;
    const cur = c[k];
    if (typeof cur === 'number') {
      const n = Number(raw);
      if (raw.trim() !== '' && Number.isFinite(n)) out[k] = n;
    } else if (typeof cur === 'boolean') out[k] = raw === '1' || raw === 'true';
    else if (k === 'mode') out[k] = raw === 'dmae' ? 'dmae' : 'mae';
    else if (k === 'distillKind') out[k] = raw === 'l2' ? 'l2' : 'l1';
    else if (k === 'lrMode') out[k] = raw === 'blr' ? 'blr' : 'lr';
    else if (k === 'precision') out[k] = raw === 'mixed' ? 'mixed' : 'f32';
    else if (k === 'dataset') {
      if (/^builtin:(mnist|shapes)$/.test(raw) || /^stored:.+/.test(raw)) out[k] = raw;
    }
  }
  return c;
}

export const STORAGE_KEY = 'dmae-studio:config';

/** The configuration to start with: the URL's (a shared link), else the last one used here, else the tiny preset. */
export function initialConfig(location: { search: string; hash: string }, storage: Pick<Storage, 'getItem'> | null): StudioConfig {
  const fromHash = location.hash.length > 1 ? decodeConfig(location.hash) : null;
  if (fromHash) return fromHash;
  const fromQuery = decodeConfig(location.search);
  if (fromQuery) return fromQuery;
  try {
    const saved = storage?.getItem(STORAGE_KEY);
    const c = saved ? decodeConfig(saved) : null;
    if (c) return c;
  } catch {
    /* storage unavailable: the default */
  }
  return DEFAULT_CONFIG;
}
