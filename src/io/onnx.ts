/**
 * ONNX export (opset 17, IR version 8) of a trained MAE, built in TypeScript over protobufjs
 * (onnx-proto.ts). Standard ops only: Conv (patch embedding), LayerNormalization (opset 17),
 * MatMul + Add (Linear, weights stored transposed as (in, out)), Reshape/Transpose/Gather
 * (attention heads), Softmax, exact GELU as Div/Erf/Add/Mul, GatherElements (masking and
 * unshuffling), Concat, Slice, Expand, Shape, Unsqueeze.
 *
 *   encoderOnnx   image [N, C, H, W] → tokens [N, 1+L, D] (the final-normed encoder output, every
 *                 patch visible, no masking; what a downstream user needs) and cls [N, D]
 *   maeOnnx       image, ids_keep [N, V] (int64), ids_restore [N, L] (int64) → pred [N, L, p·p·C]
 *                 (the decoder's predicted patches, in MAE's patchify order [row][col][channel],
 *                 normalised-pixel space when trained with norm_pix_loss) and mask [N, L]
 *                 (1 = masked), exactly MAE's forward_encoder/forward_decoder for that masking
 *
 * N and V are symbolic; the image size is fixed (the position embeddings are). Inputs are the
 * model's own inputs: images already normalised with the training mean/std.
 */
import { numPatches, patchDim, type MaeConfig } from '../engine/config';
import type { ParamMap } from '../engine/init';
import { ATTR, ModelProto, ONNX_FLOAT, ONNX_INT64 } from './onnx-proto';

type Attr = { name: string; type: number; i?: number; f?: number; ints?: number[] };

const INT64_MAX = Number.MAX_SAFE_INTEGER; // Slice's "to the end": any value ≥ the dim works

/** A small graph builder: unique value names, initializers, nodes in topological order. */
class Graph {
  readonly nodes: object[] = [];
  readonly initializers: object[] = [];
  private count = 0;
  private readonly consts = new Map<string, string>();

  constructor(private readonly params: ParamMap) {}

  private fresh(hint: string): string {
    return `${hint}_${this.count++}`;
  }

  /** A float32 initializer. */
  float(name: string, dims: number[], data: ArrayLike<number>): string {
    const f = Float32Array.from(data);
    this.initializers.push({ name, dims, data_type: ONNX_FLOAT, raw_data: new Uint8Array(f.buffer) });
    return name;
  }

  /** An int64 initializer (shapes, axes, indices), shared by value. */
  ints(values: number[], dims: number[] = [values.length]): string {
    const key = `${dims.join('x')}:${values.join(',')}`;
    let name = this.consts.get(key);
    if (!name) {
      name = `const_i64_${this.consts.size}`;
      const b = BigInt64Array.from(values.map((v) => BigInt(v)));
      this.initializers.push({ name, dims, data_type: ONNX_INT64, raw_data: new Uint8Array(b.buffer) });
      this.consts.set(key, name);
    }
    return name;
  }

  /** A float scalar (0-d) constant, shared by value. */
  scalar(v: number): string {
    const key = `f:${v}`;
    let name = this.consts.get(key);
    if (!name) {
      name = this.float(`const_f32_${this.consts.size}`, [], [v]);
      this.consts.set(key, name);
    }
    return name;
  }

  param(name: string): Float64Array {
    const v = this.params.get(name);
    if (!v) throw new Error(`ONNX export: the parameters have no tensor "${name}".`);
    return v;
  }

  /** A parameter as an initializer under its timm name. */
  p(name: string, dims: number[]): string {
    return this.float(name, dims, this.param(name));
  }

  /** One node; its output gets a fresh name, or `name` for a graph output. */
  op(type: string, inputs: string[], attrs: Attr[] = [], name?: string): string {
    const out = name ?? this.fresh(type.toLowerCase());
    this.nodes.push({ op_type: type, name: `${type}_${this.nodes.length}`, input: inputs, output: [out], attribute: attrs });
    return out;
  }

  /** y = x·Wᵀ + b for a PyTorch Linear (out, in): W stored transposed as `<name>.weight_t` (in, out). */
  linear(x: string, prefix: string, inF: number, outF: number): string {
    const w = this.param(`${prefix}.weight`);
    const t = new Float32Array(inF * outF);
    for (let o = 0; o < outF; o++) for (let i = 0; i < inF; i++) t[i * outF + o] = w[o * inF + i];
    const wt = this.float(`${prefix}.weight_t`, [inF, outF], t);
    return this.op('Add', [this.op('MatMul', [x, wt]), this.p(`${prefix}.bias`, [outF])]);
  }

  layerNorm(x: string, prefix: string, D: number, out?: string): string {
    return this.op('LayerNormalization', [x, this.p(`${prefix}.weight`, [D]), this.p(`${prefix}.bias`, [D])], [
      { name: 'axis', type: ATTR.INT, i: -1 },
      { name: 'epsilon', type: ATTR.FLOAT, f: 1e-6 },
    ], out);
  }

  /** Exact GELU: 0.5·x·(1 + erf(x/√2)). */
  gelu(x: string): string {
    const e = this.op('Erf', [this.op('Div', [x, this.scalar(Math.SQRT2)])]);
    return this.op('Mul', [this.op('Mul', [x, this.op('Add', [e, this.scalar(1)])]), this.scalar(0.5)]);
  }

  /** timm's pre-norm Block on x [N, T, D]. */
  block(x: string, prefix: string, D: number, heads: number, hidden: number): string {
    const hd = D / heads;
    const qkv = this.linear(this.layerNorm(x, `${prefix}.norm1`, D), `${prefix}.attn.qkv`, D, 3 * D); // [N, T, 3D], rows q, k, v
    const r = this.op('Transpose', [this.op('Reshape', [qkv, this.ints([0, 0, 3, heads, hd])])], [{ name: 'perm', type: ATTR.INTS, ints: [2, 0, 3, 1, 4] }]); // [3, N, H, T, hd]
    const part = (k: number) => this.op('Gather', [r, this.ints([k], [])], [{ name: 'axis', type: ATTR.INT, i: 0 }]);
    const q = part(0), kk = part(1), v = part(2);
    const kt = this.op('Transpose', [kk], [{ name: 'perm', type: ATTR.INTS, ints: [0, 1, 3, 2] }]);
    const scores = this.op('Mul', [this.op('MatMul', [q, kt]), this.scalar(hd ** -0.5)]);
    const probs = this.op('Softmax', [scores], [{ name: 'axis', type: ATTR.INT, i: -1 }]);
    const o = this.op('Transpose', [this.op('MatMul', [probs, v])], [{ name: 'perm', type: ATTR.INTS, ints: [0, 2, 1, 3] }]); // [N, T, H, hd]
    const attn = this.linear(this.op('Reshape', [o, this.ints([0, 0, D])]), `${prefix}.attn.proj`, D, D);
    const x1 = this.op('Add', [x, attn]);
    const h = this.gelu(this.linear(this.layerNorm(x1, `${prefix}.norm2`, D), `${prefix}.mlp.fc1`, D, hidden));
    return this.op('Add', [x1, this.linear(h, `${prefix}.mlp.fc2`, hidden, D)]);
  }

  /** [first dim of `like`] ++ rest, as an int64 shape (for Expand). */
  batchShape(like: string, rest: number[]): string {
    const n = this.op('Slice', [this.op('Shape', [like]), this.ints([0]), this.ints([1])]);
    return this.op('Concat', [n, this.ints(rest)], [{ name: 'axis', type: ATTR.INT, i: 0 }]);
  }

  /** image [N, C, H, W] → patch embeddings + pos [N, L, D]. */
  patchEmbed(image: string, c: MaeConfig): string {
    const D = c.embedDim, p = c.patchSize, L = numPatches(c);
    const conv = this.op('Conv', [image, this.p('patch_embed.proj.weight', [D, c.inChans, p, p]), this.p('patch_embed.proj.bias', [D])], [
      { name: 'kernel_shape', type: ATTR.INTS, ints: [p, p] },
      { name: 'strides', type: ATTR.INTS, ints: [p, p] },
    ]); // [N, D, g, g]
    const seq = this.op('Transpose', [this.op('Reshape', [conv, this.ints([0, D, L])])], [{ name: 'perm', type: ATTR.INTS, ints: [0, 2, 1] }]);
    const pos = this.param('pos_embed');
    return this.op('Add', [seq, this.float('pos_embed.patches', [1, L, D], pos.subarray(D))]);
  }

  /** cls (+ its position row) prepended to x [N, T, D]. */
  prependCls(x: string, like: string, D: number): string {
    const pos = this.param('pos_embed'), cls = this.param('cls_token');
    const c0 = this.float('cls_token.with_pos', [1, 1, D], cls.map((v, i) => v + pos[i]));
    const clsN = this.op('Expand', [c0, this.batchShape(like, [1, D])]);
    return this.op('Concat', [clsN, x], [{ name: 'axis', type: ATTR.INT, i: 1 }]);
  }

  encoderBlocks(x: string, c: MaeConfig, out?: string): string {
    for (let i = 0; i < c.depth; i++) x = this.block(x, `blocks.${i}`, c.embedDim, c.numHeads, c.mlpRatio * c.embedDim);
    return this.layerNorm(x, 'norm', c.embedDim, out);
  }

  /** Rows of x [N, R, W] picked per image by idx [N, K] (int64) → [N, K, W]. */
  gatherRows(x: string, idx: string, W: number): string {
    const shape = this.op('Concat', [this.op('Shape', [idx]), this.ints([W])], [{ name: 'axis', type: ATTR.INT, i: 0 }]);
    const full = this.op('Expand', [this.op('Unsqueeze', [idx, this.ints([2])]), shape]);
    return this.op('GatherElements', [x, full], [{ name: 'axis', type: ATTR.INT, i: 1 }]);
  }
}

const tensorType = (elem: number, dims: (number | string)[]) => ({
  tensor_type: { elem_type: elem, shape: { dim: dims.map((d) => (typeof d === 'number' ? { dim_value: d } : { dim_param: d })) } },
});

function model(g: Graph, name: string, doc: string, inputs: object[], outputs: object[], meta: Record<string, string>): Uint8Array {
  const m = {
    ir_version: 8,
    opset_import: [{ domain: '', version: 17 }],
    producer_name: 'dmae-studio',
    producer_version: '0.1.0',
    doc_string: doc,
    graph: { name, node: g.nodes, initializer: g.initializers, input: inputs, output: outputs },
    metadata_props: Object.entries(meta).map(([key, value]) => ({ key, value })),
  };
  const err = ModelProto.verify(m);
  if (err) throw new Error(`ONNX export: invalid model message (${err}).`);
  return ModelProto.encode(ModelProto.fromObject(m)).finish();
}

const metaOf = (c: MaeConfig, extra: Record<string, string> = {}) => ({ dmae_studio_config: JSON.stringify(c), ...extra });

/** The encoder alone: image [N, C, H, W] → tokens [N, 1+L, D] (normed, all patches) and cls [N, D]. */
export function encoderOnnx(c: MaeConfig, params: ParamMap, meta: Record<string, string> = {}): Uint8Array {
  const g = new Graph(params);
  const x = g.patchEmbed('image', c);
  const tokens = g.encoderBlocks(g.prependCls(x, 'image', c.embedDim), c, 'tokens');
  g.op('Gather', [tokens, g.ints([0], [])], [{ name: 'axis', type: ATTR.INT, i: 1 }], 'cls');
  const L = numPatches(c), D = c.embedDim;
  return model(g, 'mae_encoder', 'MAE/DMAE encoder (ViT): image normalised with the training mean/std → final-normed tokens (cls first) and the cls token.',
    [{ name: 'image', type: tensorType(ONNX_FLOAT, ['N', c.inChans, c.imgSize, c.imgSize]) }],
    [{ name: 'tokens', type: tensorType(ONNX_FLOAT, ['N', 1 + L, D]) }, { name: 'cls', type: tensorType(ONNX_FLOAT, ['N', D]) }],
    metaOf(c, meta));
}

/**
 * The whole MAE for a given masking: image, ids_keep [N, V] (the visible patches, in shuffled
 * order), ids_restore [N, L] (argsort of the shuffle) → pred [N, L, p·p·C] and mask [N, L].
 */
export function maeOnnx(c: MaeConfig, params: ParamMap, meta: Record<string, string> = {}): Uint8Array {
  const g = new Graph(params);
  const D = c.embedDim, Dd = c.decoderEmbedDim, L = numPatches(c), P = patchDim(c);
  const emb = g.patchEmbed('image', c);
  const visible = g.gatherRows(emb, 'ids_keep', D); // [N, V, D]
  const latent = g.encoderBlocks(g.prependCls(visible, 'image', D), c); // [N, 1+V, D]
  const y = g.linear(latent, 'decoder_embed', D, Dd); // [N, 1+V, Dd]
  const axis1 = [{ name: 'axis', type: ATTR.INT, i: 1 }];
  const yCls = g.op('Slice', [y, g.ints([0]), g.ints([1]), g.ints([1])]);
  const yVis = g.op('Slice', [y, g.ints([1]), g.ints([INT64_MAX]), g.ints([1])]);
  // Append L mask tokens (at least the L−V needed, all equal) and unshuffle: ids_restore < V picks
  // a visible row, ≥ V a mask token — MAE's concat + gather, without computing L−V.
  const masks = g.op('Expand', [g.p('mask_token', [1, 1, Dd]), g.batchShape('image', [L, Dd])]);
  const seq = g.gatherRows(g.op('Concat', [yVis, masks], axis1), 'ids_restore', Dd); // [N, L, Dd]
  let x = g.op('Add', [g.op('Concat', [yCls, seq], axis1), g.p('decoder_pos_embed', [1, 1 + L, Dd])]);
  for (let i = 0; i < c.decoderDepth; i++) x = g.block(x, `decoder_blocks.${i}`, Dd, c.decoderNumHeads, c.mlpRatio * Dd);
  const out = g.linear(g.layerNorm(x, 'decoder_norm', Dd), 'decoder_pred', Dd, P);
  g.op('Slice', [out, g.ints([1]), g.ints([INT64_MAX]), g.ints([1])], [], 'pred');
  // mask = ids_restore ≥ V, V = ids_keep's second dim
  const V = g.op('Slice', [g.op('Shape', ['ids_keep']), g.ints([1]), g.ints([2])]);
  g.op('Cast', [g.op('GreaterOrEqual', ['ids_restore', V])], [{ name: 'to', type: ATTR.INT, i: ONNX_FLOAT }], 'mask');
  return model(g, 'mae_reconstruction', 'MAE reconstruction for a given masking (MAE forward_encoder + forward_decoder): pred are the predicted patches [row][col][channel] (normalised per patch when trained with norm_pix_loss); mask 1 = masked.',
    [
      { name: 'image', type: tensorType(ONNX_FLOAT, ['N', c.inChans, c.imgSize, c.imgSize]) },
      { name: 'ids_keep', type: tensorType(ONNX_INT64, ['N', 'V']) },
      { name: 'ids_restore', type: tensorType(ONNX_INT64, ['N', L]) },
    ],
    [{ name: 'pred', type: tensorType(ONNX_FLOAT, ['N', L, P]) }, { name: 'mask', type: tensorType(ONNX_FLOAT, ['N', L]) }],
    metaOf(c, meta));
}
