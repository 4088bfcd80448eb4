/**
 * A fine-tuned classifier read back: what `evaluate --method finetune --save DIR` writes as
 * DIR/finetuned.safetensors (and `kd` as its model.safetensors): the encoder without its final
 * `norm`, then `fc_norm` and `head` (timm's VisionTransformer(global_pool='avg'), MAE's
 * models_vit), timm names, any float dtype, optionally under a prefix (model., module.).
 *
 * The architecture comes from the teacher import's inference (shapes, heads from the file's own
 * `dmae_studio_finetuned` metadata, else a config.json, else head dim 64); the class count from
 * head.weight [K, D]. Every tensor of the fine-tuning table (finetuneParamLayout) is checked.
 */
import { finetuneParamLayout } from '../engine/classifier';
import type { MaeConfig } from '../engine/config';
import type { ParamMap } from '../engine/init';
import { ImportError, importTeacher, type ImportReport } from './import';
import { FLOAT_DTYPES, readSafetensors, toFloat32 } from './safetensors';

/** The __metadata__ key of a fine-tuned model: JSON with its config, classes and training options. */
export const FINETUNED_METADATA_KEY = 'dmae_studio_finetuned';

export interface FinetunedModel {
  /** The encoder's sizes (decoder fields are placeholders: a classifier has no decoder). */
  config: MaeConfig;
  numClasses: number;
  /** The class names the file records (its metadata's `classes`), or null. */
  classNames: string[] | null;
  /** Every tensor of finetuneParamLayout(config, numClasses), float32 values as float64. */
  params: ParamMap;
  /** The file's `dmae_studio_finetuned` metadata, parsed (null when absent). */
  meta: Record<string, unknown> | null;
  notes: string[];
}

const NORM = ['norm.weight', 'norm.bias'];

/**
 * Whether a safetensors header (the parsed JSON of its first bytes) is a fine-tuned classifier's:
 * the studio's metadata key, or fc_norm and head tensors without an encoder `norm`.
 */
export function isFinetunedHeader(header: Record<string, unknown>): boolean {
  const meta = header.__metadata__;
  if (typeof meta === 'object' && meta !== null && FINETUNED_METADATA_KEY in meta) return true;
  const names = Object.keys(header);
  const has = (suffix: string) => names.some((n) => n === suffix || n.endsWith(`.${suffix}`));
  return has('fc_norm.weight') && has('head.weight') && !has('norm.weight');
}

/** Whether an import failed only for want of the encoder's final norm (what fine-tuning drops). */
function onlyNormMissing(r: ImportReport | undefined): r is ImportReport {
  return !!r && r.missing.length > 0 && r.missing.every((n) => NORM.includes(n)) && r.wrongShape.length === 0 && r.wrongDtype.length === 0;
}

/**
 * Reads a fine-tuned classifier from safetensors bytes. Throws ImportError with a message that
 * says what is wrong: not a ViT, a pretrained encoder without a classification head, a head of
 * the wrong shape, a missing tensor.
 */
export function importFinetuned(bytes: Uint8Array, opts: { file?: string; configJson?: unknown } = {}): FinetunedModel {
  const file = opts.file ?? 'weights file';
  const st = readSafetensors(bytes, { file });
  const notes: string[] = [];
  let meta: Record<string, unknown> | null = null;
  const raw = st.metadata[FINETUNED_METADATA_KEY];
  if (raw !== undefined) {
    try {
      const j = JSON.parse(raw) as unknown;
      if (typeof j === 'object' && j !== null) meta = j as Record<string, unknown>;
    } catch {
      notes.push(`__metadata__.${FINETUNED_METADATA_KEY} is not valid JSON; ignored.`);
    }
  }
  // The file's own config names the heads (a studio config: numHeads), else a config.json beside it.
  const configJson = typeof meta?.config === 'object' && meta.config !== null ? meta.config : opts.configJson;
  let report: ImportReport;
  try {
    report = importTeacher(bytes, { file, configJson }).report;
    notes.push('The file also holds an encoder `norm`; a fine-tuned classifier pools through fc_norm, so it is unused.');
  } catch (e) {
    if (!(e instanceof ImportError && onlyNormMissing(e.report))) throw e;
    report = e.report;
  }
  notes.push(...report.notes);
  const { config, prefix } = report;
  const D = config.embedDim;
  const byName = new Map([...st.tensors].filter(([n]) => n.startsWith(prefix)).map(([n, t]) => [n.slice(prefix.length), t]));
  const hw = byName.get('head.weight');
  if (!hw || !byName.has('fc_norm.weight')) {
    const what = !hw ? 'no head.weight' : 'no fc_norm (a classifier that pools the cls token through `norm`; the studio fine-tunes with average pooling and fc_norm)';
    throw new ImportError(`${file}: not a fine-tuned classifier of the studio's form — ${what}. ` +
      (!hw ? 'It looks like a pretrained encoder: fine-tune it first (npm run dmae -- evaluate RUN --method finetune --save DIR).' : ''), report);
  }
  if (hw.shape.length !== 2 || hw.shape[1] !== D || !(hw.shape[0] >= 2)) {
    throw new ImportError(`${file}: head.weight is [${hw.shape.join(', ')}]; a classifier of width ${D} needs [K, ${D}] with K ≥ 2 classes.`, report);
  }
  const K = hw.shape[0];
  const layout = finetuneParamLayout(config, K);
  const problems: string[] = [];
  const params: ParamMap = new Map();
  for (const e of layout.entries) {
    const t = byName.get(e.name);
    if (!t) problems.push(`missing ${e.name}`);
    else if (t.shape.length !== e.shape.length || t.shape.some((d, i) => d !== e.shape[i])) problems.push(`${e.name} is [${t.shape.join(', ')}], expected [${e.shape.join(', ')}]`);
    else if (!FLOAT_DTYPES.includes(t.dtype)) problems.push(`${e.name} is ${t.dtype}, not a float dtype`);
    else params.set(e.name, Float64Array.from(toFloat32(t, file)));
  }
  if (problems.length) throw new ImportError(`${file}: the fine-tuned classifier's tensors do not match its inferred sizes — ${problems.join('; ')}.`, report);
  const unused = [...byName.keys()].filter((n) => !layout.has(n) && !NORM.includes(n));
  if (unused.length) notes.push(`Unused tensors (not part of a fine-tuned classifier): ${unused.join(', ')}.`);
  const classes = meta?.classes;
  const classNames = Array.isArray(classes) && classes.length === K && classes.every((c) => typeof c === 'string') ? (classes as string[]) : null;
  notes.push(`A fine-tuned classifier: ${K} classes, mean of the patch tokens → fc_norm → head.`);
  return { config, numClasses: K, classNames, params, meta, notes };
}

/**
 * The encoder of a fine-tuned classifier as a DMAE teacher's (or a frozen encoder's) table:
 * its patch embedding, tokens and blocks, with a stand-in final norm (weight 1, bias 0) since
 * fine-tuning has none. DMAE reads raw block outputs before any norm, so the stand-in never
 * changes its features; it only completes the table for code that expects an encoder's `norm`.
 */
export function finetunedEncoder(m: FinetunedModel): ParamMap {
  const out: ParamMap = new Map();
  for (const [n, v] of m.params) if (!/^(fc_norm|head)\./.test(n)) out.set(n, v);
  out.set('norm.weight', new Float64Array(m.config.embedDim).fill(1));
  out.set('norm.bias', new Float64Array(m.config.embedDim));
  return out;
}
