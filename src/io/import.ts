/**
 * Weights in: a teacher (or any studio model) from safetensors.
 *
 * Accepted names: the reference/timm names of recipe §6, optionally under a `model.` or
 * `module.` prefix (a DDP or {"model": …} checkpoint flattened), or `mae.` (a DMAE student's
 * inner MAE). Tensors of any float dtype (F32, F16, BF16, F64) become float32 values.
 *
 * The architecture is read from the shapes:
 *   D, C, p            patch_embed.proj.weight (D, C, p, p)
 *   L → image size     pos_embed (1, 1+L, D): image = √L·p (or img_size from a config)
 *   depth              the blocks.{i} present (0..depth−1, none missing)
 *   MLP ratio          blocks.0.mlp.fc1.weight (ratio·D, D)
 *   decoder            decoder_embed.weight (Dd, D), decoder_blocks.{i}, decoder_pred
 * Heads cannot be read from shapes (qkv is (3D, D) for every head count). They come from, in
 * order: the studio's own __metadata__, a config.json given with the file (timm's model_args /
 * num_heads, or the studio's config), else the standard ViT rule head dim 64 (embed_dim/64:
 * right for ViT-Ti/S/B/L, wrong for ViT-H/14, which has 16 heads of 80) and for the decoder head
 * dim 32 (MAE's 512-wide decoder has 16 heads). The report says which source was used.
 *
 * Every tensor is checked against the table of the inferred model; the error lists exactly what
 * is missing, unexpected, or of the wrong shape.
 */
import { ArenaLayout } from '../gpu/buffers';
import { validateMaeConfig, type DistillConfig, type MaeConfig } from '../engine/config';
import type { ParamMap } from '../engine/init';
import { addDecoderParams, addEncoderParams, addProjectionParams } from '../engine/params';
import { MODEL_FORMAT, MODEL_METADATA_KEY, type FullModelJson } from './export';
import { FLOAT_DTYPES, readSafetensors, toFloat32, type SafetensorsTensor } from './safetensors';

export class ImportError extends Error {
  constructor(message: string, readonly report?: ImportReport) {
    super(message);
    this.name = 'ImportError';
  }
}

export interface ImportReport {
  file: string;
  /** The prefix removed from every name ('' when none). */
  prefix: string;
  config: MaeConfig;
  /** Where the head counts came from. */
  headsFrom: string;
  hasDecoder: boolean;
  /** DMAE projection heads found (0 for a plain MAE). */
  projectionHeads: number;
  /** Tensors the model needs and the file lacks. */
  missing: string[];
  /** Tensors present under the wrong shape. */
  wrongShape: { name: string; expected: number[]; got: number[] }[];
  /** Tensors of a non-float dtype (I64, U8, …) where a float tensor is needed. */
  wrongDtype: { name: string; dtype: string }[];
  /** Tensors the model does not know (left unused; listed so nothing is dropped silently). */
  unexpected: string[];
  /** Tensors known to be unused by an encoder (a classifier head, fc_norm): ignored. */
  ignored: string[];
  /** Dtypes seen, and how many tensors each. */
  dtypes: Record<string, number>;
  /** The studio's own description when the file is one of its full exports. */
  studio?: FullModelJson;
  /** Human-readable lines: what was inferred and how. */
  notes: string[];
}

export interface ImportOptions {
  /** Named in messages. */
  file?: string;
  /** A config.json found next to the file (timm's, or the studio's), parsed. */
  configJson?: unknown;
  /** 'encoder': the decoder is not needed (a teacher); 'full': encoder and decoder must be there. */
  need?: 'encoder' | 'full';
}

/** The usual prefixes (DDP's module., a flattened {"model": …}, a DMAE student's mae.); any other is accepted too. */
export const PREFIXES = ['module.', 'model.', 'module.model.', 'mae.', 'encoder.'];
/** Tensors a timm ViT or a fine-tuned MAE may carry that an MAE encoder never uses. */
const IGNORABLE = /^(head\.|fc_norm\.|head_drop|pre_logits\.|attn_pool\.)/;

function stripPrefix(names: string[]): string {
  const anchor = (n: string) => n.endsWith('patch_embed.proj.weight');
  // The shortest prefix wins: a checkpoint holds model.* and teacher.* encoders.
  const a = names.filter(anchor).sort((x, y) => x.length - y.length)[0];
  if (!a) return '';
  // Any prefix ending in '.' is accepted (the usual ones: PREFIXES); the report names it.
  return a.slice(0, a.length - 'patch_embed.proj.weight'.length);
}

/** Heads from a config.json (timm: model_args.num_heads / num_heads; the studio: config.numHeads). */
/** Heads and image size from a config.json: the studio's, timm's (model_args), or Hugging Face's ViTMAEConfig. */
function headsFromJson(j: unknown): { enc?: number; dec?: number; imgSize?: number; layerNormEps?: number } {
  if (typeof j !== 'object' || j === null) return {};
  const o = j as Record<string, any>;
  const cfg = (o.format === MODEL_FORMAT ? o.config : o.model_args ?? o) as Record<string, any>;
  const int = (v: unknown) => (Number.isInteger(v) && (v as number) > 0 ? (v as number) : undefined);
  return {
    enc: int(cfg?.numHeads ?? cfg?.num_heads ?? cfg?.num_attention_heads),
    dec: int(cfg?.decoderNumHeads ?? cfg?.decoder_num_heads ?? cfg?.decoder_num_attention_heads),
    imgSize: int(cfg?.imgSize ?? cfg?.img_size ?? cfg?.image_size ?? (Array.isArray(o.pretrained_cfg?.input_size) ? o.pretrained_cfg.input_size[2] : undefined)),
    layerNormEps: typeof cfg?.layer_norm_eps === 'number' ? cfg.layer_norm_eps : undefined,
  };
}

/** Hugging Face transformers' ViTMAE names (convert_vit_mae_to_pytorch.py's mapping, reversed) → timm names. */
const HF_BLOCK: [RegExp, string][] = [
  [/^layernorm_before\./, 'norm1.'],
  [/^layernorm_after\./, 'norm2.'],
  [/^attention\.output\.dense\./, 'attn.proj.'],
  [/^intermediate\.dense\./, 'mlp.fc1.'],
  [/^output\.dense\./, 'mlp.fc2.'],
];
const HF_TOP: Record<string, string> = {
  'vit.embeddings.cls_token': 'cls_token',
  'vit.embeddings.position_embeddings': 'pos_embed',
  'vit.embeddings.patch_embeddings.projection.weight': 'patch_embed.proj.weight',
  'vit.embeddings.patch_embeddings.projection.bias': 'patch_embed.proj.bias',
  'vit.layernorm.weight': 'norm.weight',
  'vit.layernorm.bias': 'norm.bias',
  'decoder.mask_token': 'mask_token',
  'decoder.decoder_pos_embed': 'decoder_pos_embed',
  'decoder.decoder_embed.weight': 'decoder_embed.weight',
  'decoder.decoder_embed.bias': 'decoder_embed.bias',
  'decoder.decoder_norm.weight': 'decoder_norm.weight',
  'decoder.decoder_norm.bias': 'decoder_norm.bias',
  'decoder.decoder_pred.weight': 'decoder_pred.weight',
  'decoder.decoder_pred.bias': 'decoder_pred.bias',
};

/**
 * A Hugging Face ViTMAE state dict renamed to timm's names, its separate query/key/value
 * Linears joined into one qkv (rows q, k, v, as MAE's fused Linear). Null when the names are not HF's.
 */
function fromHuggingFace(tensors: Map<string, SafetensorsTensor>, file: string): Map<string, SafetensorsTensor> | null {
  // ViTMAEForPreTraining names the encoder vit.*; a bare ViTMAEModel has embeddings.*, encoder.*, layernorm.*.
  const strip = (raw: string) => {
    const n = raw.replace(/^(module\.|model\.)+/, '');
    return /^(embeddings|encoder|layernorm)\./.test(n) ? `vit.${n}` : n;
  };
  if (![...tensors.keys()].some((n) => strip(n) === 'vit.embeddings.patch_embeddings.projection.weight')) return null;
  const out = new Map<string, SafetensorsTensor>();
  const qkv = new Map<string, Partial<Record<'query' | 'key' | 'value', SafetensorsTensor>>>();
  for (const [raw, t] of tensors) {
    const n = strip(raw);
    if (HF_TOP[n]) {
      out.set(HF_TOP[n], { ...t, name: HF_TOP[n] });
      continue;
    }
    const m = /^(vit\.encoder\.layer|decoder\.decoder_layers)\.(\d+)\.(.*)$/.exec(n);
    if (!m) {
      out.set(n, t); // kept under its own name: reported as unexpected
      continue;
    }
    const block = `${m[1] === 'vit.encoder.layer' ? 'blocks' : 'decoder_blocks'}.${m[2]}`;
    const q = /^attention\.attention\.(query|key|value)\.(weight|bias)$/.exec(m[3]);
    if (q) {
      const key = `${block}.attn.qkv.${q[2]}`;
      const parts = qkv.get(key) ?? {};
      parts[q[1] as 'query' | 'key' | 'value'] = t;
      qkv.set(key, parts);
      continue;
    }
    const rule = HF_BLOCK.find(([re]) => re.test(m[3]));
    const name = rule ? `${block}.${m[3].replace(rule[0], rule[1])}` : n;
    out.set(name, { ...t, name });
  }
  for (const [name, parts] of qkv) {
    const { query: q, key: k, value: v } = parts;
    if (!q || !k || !v) {
      for (const t of [q, k, v]) if (t) out.set(t.name, t); // incomplete: left for the report
      continue;
    }
    const rows = q.shape[0];
    if (k.shape.join() !== q.shape.join() || v.shape.join() !== q.shape.join()) {
      out.set(q.name, q), out.set(k.name, k), out.set(v.name, v);
      continue;
    }
    const joined = new Float32Array(3 * toFloat32(q, file).length);
    [q, k, v].forEach((t, i) => joined.set(toFloat32(t, file), i * (joined.length / 3)));
    out.set(name, { name, dtype: 'F32', shape: [3 * rows, ...q.shape.slice(1)], bytes: new Uint8Array(joined.buffer) });
  }
  return out;
}

/**
 * Reads model weights from safetensors bytes, infers the architecture, checks every tensor and
 * returns them as a ParamMap (timm names, float32 values) with a report. Throws ImportError
 * (its message lists every mismatch) when a needed tensor is missing or of the wrong shape,
 * and SafetensorsError for a malformed file.
 */
export function importWeights(bytes: Uint8Array, opts: ImportOptions = {}): { params: ParamMap; config: MaeConfig; report: ImportReport } {
  const file = opts.file ?? 'weights file';
  const need = opts.need ?? 'encoder';
  const st = readSafetensors(bytes, { file });
  const notes: string[] = [];
  let studio: FullModelJson | undefined;
  if (st.metadata[MODEL_METADATA_KEY]) {
    try {
      const j = JSON.parse(st.metadata[MODEL_METADATA_KEY]) as FullModelJson;
      if (j.format === MODEL_FORMAT) studio = j;
    } catch {
      notes.push(`__metadata__.${MODEL_METADATA_KEY} is not valid JSON; ignored.`);
    }
  }
  const hf = fromHuggingFace(st.tensors, file);
  if (hf) notes.push('Hugging Face ViTMAE names (vit.embeddings.*, vit.encoder.layer.*, decoder.decoder_layers.*): renamed to the MAE/timm names, query/key/value joined into qkv.');
  const source = hf ?? st.tensors;
  const prefix = stripPrefix([...source.keys()]);
  if (prefix) notes.push(`Names carry the prefix "${prefix}"; removed.`);
  const byName = new Map<string, SafetensorsTensor>();
  const foreign: string[] = [], ignoredForeign: string[] = []; // a checkpoint's optimizer.* and teacher.* are not the model's
  for (const [n, t] of source) {
    if (prefix && !n.startsWith(prefix)) (/^(optimizer|teacher)\./.test(n) ? ignoredForeign : foreign).push(n);
    else byName.set(prefix ? n.slice(prefix.length) : n, t);
  }
  const shapeOf = (n: string) => byName.get(n)?.shape;
  const fail = (msg: string): never => {
    throw new ImportError(`${file}: ${msg}`);
  };

  // --- architecture from the shapes ---
  const pe = shapeOf('patch_embed.proj.weight');
  if (!pe) fail(`no patch_embed.proj.weight (found ${byName.size} tensors${byName.size ? `, e.g. ${[...byName.keys()].slice(0, 5).join(', ')}` : ''}); not a ViT/MAE state dict with reference or timm names.`);
  if (pe!.length !== 4 || pe![2] !== pe![3]) fail(`patch_embed.proj.weight has shape [${pe!.join(', ')}]; expected (D, C, p, p).`);
  const [D, C, p] = pe!;
  const json = headsFromJson(studio ?? opts.configJson);
  const pos = shapeOf('pos_embed');
  let imgSize: number;
  if (pos && pos.length === 3 && pos[2] === D) {
    const L = pos[1] - 1, g = Math.round(Math.sqrt(L));
    if (g * g !== L) fail(`pos_embed has ${pos[1]} rows: 1 + ${L} patches is not a square grid.`);
    imgSize = g * p;
    if (json.imgSize !== undefined && json.imgSize !== imgSize) notes.push(`config.json says image size ${json.imgSize}, pos_embed says ${imgSize}; using ${imgSize}.`);
  } else if (json.imgSize !== undefined) {
    imgSize = json.imgSize;
    notes.push(`Image size ${imgSize} from the config (no usable pos_embed).`);
  } else {
    imgSize = fail('no pos_embed of shape (1, 1+L, D) and no config.json with img_size: the image size cannot be inferred.');
  }
  const blockIds = (prefixRe: RegExp) => {
    const ids = new Set<number>();
    for (const n of byName.keys()) {
      const m = prefixRe.exec(n);
      if (m) ids.add(Number(m[1]));
    }
    return ids;
  };
  const enc = blockIds(/^blocks\.(\d+)\./);
  const depth = enc.size ? Math.max(...enc) + 1 : 0;
  if (depth === 0) fail('no blocks.{i}.* tensors: an encoder needs at least one block.');
  const fc1 = shapeOf('blocks.0.mlp.fc1.weight');
  const mlpRatio = fc1 && fc1.length === 2 && fc1[1] === D && fc1[0] % D === 0 ? fc1[0] / D : 4;
  if (!fc1) notes.push('blocks.0.mlp.fc1.weight missing; assuming MLP ratio 4.');

  const de = shapeOf('decoder_embed.weight');
  const hasDecoder = !!de;
  const dec = blockIds(/^decoder_blocks\.(\d+)\./);
  const Dd = de && de.length === 2 ? de[0] : D;
  const decoderDepth = hasDecoder ? Math.max(1, dec.size ? Math.max(...dec) + 1 : 0) : 1;

  let headsFrom = '';
  let numHeads: number, decoderNumHeads: number;
  const src = studio ? 'the file\'s own description (__metadata__)' : 'config.json';
  if (json.enc !== undefined) {
    numHeads = json.enc;
    headsFrom = `${src}: ${numHeads} heads`;
  } else if (D % 64 === 0) {
    numHeads = D / 64;
    headsFrom = `the standard ViT rule (head dim 64): ${D}/64 = ${numHeads} heads — heads cannot be read from shapes; give a config.json if this is wrong`;
  } else {
    numHeads = fail(`width ${D} is not a multiple of 64, so the standard ViT rule (head dim 64) gives no head count, and no config.json says it; heads cannot be read from shapes. Put a config.json with num_heads next to the file.`);
  }
  if (json.dec !== undefined) decoderNumHeads = json.dec;
  else decoderNumHeads = hasDecoder && Dd % 32 === 0 ? Dd / 32 : numHeads;
  if (hasDecoder) headsFrom += json.dec !== undefined ? `; decoder: ${src}, ${decoderNumHeads} heads` : `; decoder: head dim 32 rule, ${decoderNumHeads} heads`;
  notes.push(`Heads from ${headsFrom}.`);
  if (json.layerNormEps !== undefined && json.layerNormEps !== 1e-6) {
    notes.push(`The config says LayerNorm eps ${json.layerNormEps}; the engine uses MAE's 1e-6 (Hugging Face's ViTMAE config says 1e-12): features differ slightly.`);
  }

  const predShape = shapeOf('decoder_pred.weight');
  if (hasDecoder && predShape && predShape[0] !== p * p * C) notes.push(`decoder_pred predicts ${predShape[0]} values per patch, not p·p·C = ${p * p * C}.`);
  const config: MaeConfig = {
    imgSize, patchSize: p, inChans: C, embedDim: D, depth, numHeads, mlpRatio,
    decoderEmbedDim: Dd, decoderDepth, decoderNumHeads, normPixLoss: studio?.config.normPixLoss ?? true,
  };
  try {
    validateMaeConfig(config);
  } catch (e) {
    fail(`the inferred model is not one the engine supports: ${(e as Error).message}`);
  }
  notes.push(`Inferred: image ${imgSize}, patch ${p}, ${C} channel(s), width ${D}, depth ${depth}, ${numHeads} heads, MLP ratio ${mlpRatio}` +
    (hasDecoder ? `; decoder width ${Dd}, depth ${decoderDepth}, ${decoderNumHeads} heads.` : '; no decoder.'));

  // --- the expected table, and every tensor against it ---
  const layout = new ArenaLayout();
  addEncoderParams(layout, config);
  if (hasDecoder || need === 'full') addDecoderParams(layout, config);
  const heads = blockIds(/^aligned_feature_projection_heads\.(\d+)\./);
  const projectionHeads = heads.size ? Math.max(...heads) + 1 : 0;
  if (projectionHeads > 0) {
    const w = shapeOf('aligned_feature_projection_heads.0.weight');
    addProjectionParams(layout, D, w && w.length === 2 ? w[0] : D, projectionHeads);
  }
  const missing: string[] = [], wrongShape: ImportReport['wrongShape'] = [], wrongDtype: ImportReport['wrongDtype'] = [], unexpected: string[] = [...foreign], ignored: string[] = [...ignoredForeign];
  const dtypes: Record<string, number> = {};
  for (const e of layout.entries) {
    const t = byName.get(e.name);
    if (!t) missing.push(e.name);
    else if (t.shape.length !== e.shape.length || t.shape.some((d, i) => d !== e.shape[i])) wrongShape.push({ name: e.name, expected: e.shape, got: t.shape });
    else if (!FLOAT_DTYPES.includes(t.dtype)) wrongDtype.push({ name: e.name, dtype: t.dtype });
  }
  for (const [n, t] of byName) {
    dtypes[t.dtype] = (dtypes[t.dtype] ?? 0) + 1;
    if (!layout.has(n)) (IGNORABLE.test(n) ? ignored : unexpected).push(prefix + n);
  }
  const report: ImportReport = { file, prefix, config, headsFrom, hasDecoder, projectionHeads, missing, wrongShape, wrongDtype, unexpected, ignored, dtypes, studio, notes };
  if (missing.length || wrongShape.length || wrongDtype.length) {
    const parts: string[] = [];
    if (missing.length) parts.push(`missing ${missing.length}: ${missing.join(', ')}`);
    if (wrongShape.length) parts.push(`wrong shape ${wrongShape.length}: ${wrongShape.map((w) => `${w.name} is [${w.got.join(', ')}], expected [${w.expected.join(', ')}]`).join('; ')}`);
    if (wrongDtype.length) parts.push(`not a float dtype ${wrongDtype.length}: ${wrongDtype.map((w) => `${w.name} is ${w.dtype}`).join(', ')}`);
    if (unexpected.length) parts.push(`unexpected ${unexpected.length}: ${unexpected.join(', ')}`);
    throw new ImportError(`${file}: the tensors do not match the inferred model (${notes.find((n) => n.startsWith('Inferred')) ?? ''}) — ${parts.join('; ')}.`, report);
  }
  const params: ParamMap = new Map();
  for (const e of layout.entries) params.set(e.name, Float64Array.from(toFloat32(byName.get(e.name)!, file)));
  return { params, config, report };
}

/** A DMAE teacher: the encoder of any supported size (the decoder, if present, is checked and dropped). */
export function importTeacher(bytes: Uint8Array, opts: Omit<ImportOptions, 'need'> = {}): { params: ParamMap; config: MaeConfig; report: ImportReport } {
  const r = importWeights(bytes, { ...opts, need: 'encoder' });
  for (const n of [...r.params.keys()]) if (!/^(cls_token|pos_embed|patch_embed\.|blocks\.|norm\.)/.test(n)) r.params.delete(n);
  return r;
}

/** The studio's own full export: the model's description and all its tensors (DMAE: the heads too). */
export function importStudioModel(bytes: Uint8Array, opts: Omit<ImportOptions, 'need'> = {}): { params: ParamMap; model: { mode: 'mae' | 'dmae'; config: MaeConfig; teacher: MaeConfig | null; distill: DistillConfig | null; step: number }; report: ImportReport } {
  const r = importWeights(bytes, { ...opts, need: 'full' });
  const s = r.report.studio;
  const config = s ? s.config : r.config;
  const model = { mode: (s?.mode ?? (r.report.projectionHeads ? 'dmae' : 'mae')) as 'mae' | 'dmae', config, teacher: s?.teacher ?? null, distill: s?.distill ?? null, step: s?.step ?? 0 };
  return { params: r.params, model, report: r.report };
}
