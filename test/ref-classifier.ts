/**
 * The fine-tuning classifier (global pool of the patch tokens, fc_norm, head) composed in float64
 * from src/ref, for the tests that compare the GPU classifier with it.
 */
import type { MaeConfig } from '../src/engine/config';
import { numPatches } from '../src/engine/config';
import type { ParamMap } from '../src/engine/init';
import * as refCls from '../src/ref/classify';
import { layernormBackward, layernormForward } from '../src/ref/layernorm';
import { linearBackward, linearForward } from '../src/ref/matmul';
import * as refModel from '../src/ref/model';

/** The fine-tuning classifier in float64 (src/ref): logits, and what its backward needs. */
export function refClassifier(params: ParamMap, cfg: MaeConfig, imgs: Float64Array, N: number, K: number) {
  const L = numPatches(cfg), T = 1 + L, D = cfg.embedDim;
  const ids = Uint32Array.from({ length: N * L }, (_, i) => i % L);
  const withNorm = new Map(params);
  withNorm.set('norm.weight', new Float64Array(D).fill(1));
  withNorm.set('norm.bias', new Float64Array(D));
  const enc = refModel.forwardEncoder(withNorm, cfg, imgs, ids, N, { featureBlocks: [cfg.depth - 1] });
  const x = enc.features.get(cfg.depth - 1)!;
  const pooled = new Float64Array(N * D), fcn = new Float64Array(N * D), mean = new Float64Array(N), rstd = new Float64Array(N), logits = new Float64Array(N * K);
  refCls.meanPoolForward(pooled, x, N, T, D);
  layernormForward(fcn, mean, rstd, pooled, params.get('fc_norm.weight')!, params.get('fc_norm.bias')!, N, D);
  linearForward(logits, fcn, params.get('head.weight')!, params.get('head.bias')!, N, D, K);
  const backward = (dlogits: Float64Array): ParamMap => {
    const G = refModel.zeroGrads(withNorm);
    const dfcn = new Float64Array(N * D), dpooled = new Float64Array(N * D), dx = new Float64Array(N * T * D);
    linearBackward(dfcn, G.get('head.weight')!, G.get('head.bias')!, dlogits, fcn, params.get('head.weight')!, N, D, K);
    layernormBackward(dpooled, G.get('fc_norm.weight')!, G.get('fc_norm.bias')!, dfcn, pooled, params.get('fc_norm.weight')!, mean, rstd, N, D);
    refCls.meanPoolBackward(dx, dpooled, N, T, D);
    refModel.backwardEncoder(G, withNorm, cfg, enc.cache, null, new Map([[cfg.depth - 1, dx]]));
    G.delete('norm.weight');
    G.delete('norm.bias');
    return G;
  };
  return { logits, backward };
}
