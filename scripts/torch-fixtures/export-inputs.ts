/**
 * Writes test/fixtures/torch/inputs.json: everything make_fixtures.py needs to rebuild our tiny
 * MAE and DMAE in PyTorch: the configs, every parameter (initParams, then the tests'
 * perturbation, float32 values), the images, the masking ids of each step, the AdamW settings
 * and which tensors decay. Run: npx tsx scripts/torch-fixtures/export-inputs.ts
 *
 * test/model-fixtures.ts cannot be imported outside vitest (it imports test/helpers.ts, which imports vitest), so
 * its randn/perturbedParams/testMasking are restated here; test/engine/torch-fixtures.test.ts
 * checks that the written inputs equal what those helpers produce.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { maeConfig, numPatches, type DistillConfig, type MaeConfig } from '../../src/engine/config';
import { dmaeStudentLayout } from '../../src/engine/dmae';
import type { ParamMap } from '../../src/engine/init';
import { FROZEN, maeParamLayout } from '../../src/engine/params';
import type { ArenaLayout } from '../../src/gpu/buffers';
import { ADAMW_DEFAULTS, decaysByRecipe } from '../../src/gpu/ops/adamw';
import { randn } from '../../test/numerics';
import { perturbedParams, testMasking } from '../../test/model-fixtures';
import type { Masking } from '../../src/core/masking';

// --- the two cases ------------------------------------------------------------------------------
/** 8×8×3 images, patch 2 (L = 16, so the masking and both patch orders are non-trivial), width 8, depth 2, decoder 8×1. */
const torchStudentConfig = (): MaeConfig =>
  maeConfig('test', { imgSize: 8, patchSize: 2, inChans: 3 }, { embedDim: 8, numHeads: 2, decoderEmbedDim: 8, decoderNumHeads: 2, normPixLoss: true });
/** The teacher: width 12 (3 heads), depth 3, same geometry. */
const torchTeacherConfig = (): MaeConfig => ({ ...torchStudentConfig(), embedDim: 12, depth: 3, numHeads: 3 });
/** The default pairing for depths 2 and 3 (block 1 ↔ block 1; the teacher stops at 1 of 3), L1, α = 1. */
const torchDistill: DistillConfig = { pairs: [{ studentBlock: 1, teacherBlock: 1 }], alpha: 1, kind: 'l1' };
const TORCH_CASE = { N: 2, V: 5, steps: 5, lr: 1e-3, maeSeed: 71, dmaeSeed: 81 } as const;

const tensors = (layout: ArenaLayout, m: ParamMap) =>
  Object.fromEntries(layout.entries.map((e) => [e.name, { shape: e.shape, data: Array.from(m.get(e.name)!) }]));
const masking = (m: Masking) => ({ idsKeep: Array.from(m.idsKeep), idsRestore: Array.from(m.idsRestore), mask: Array.from(m.mask) });
/** Names that get weight decay (decayRanges' rule) and names that are trained at all. */
const optimiser = (layout: ArenaLayout) => ({
  lr: TORCH_CASE.lr, steps: TORCH_CASE.steps, betas: [ADAMW_DEFAULTS.beta1, ADAMW_DEFAULTS.beta2], eps: ADAMW_DEFAULTS.eps, weightDecay: ADAMW_DEFAULTS.weightDecay,
  decay: layout.entries.filter((e) => decaysByRecipe(e.name, e.shape)).map((e) => e.name),
  frozen: layout.entries.filter((e) => FROZEN.has(e.name)).map((e) => e.name),
});

function build() {
  const { N, V, steps } = TORCH_CASE;
  const cfg = torchStudentConfig(), tcfg = torchTeacherConfig(), L = numPatches(cfg);
  const imgsLen = N * cfg.inChans * cfg.imgSize ** 2;

  const maeLayout = maeParamLayout(cfg);
  const ms = TORCH_CASE.maeSeed;
  const mae = {
    config: cfg, N, V, L, seed: ms, // params: seed; imgs: seed + 1; maskings[t]: seed + 2 + t
    params: tensors(maeLayout, perturbedParams(maeLayout, cfg, ms)),
    imgs: Array.from(randn(imgsLen, ms + 1)),
    maskings: Array.from({ length: steps }, (_, t) => masking(testMasking(N, L, V, ms + 2 + t))),
    optimizer: optimiser(maeLayout),
  };

  const sLayout = dmaeStudentLayout(cfg, tcfg, torchDistill), tLayout = maeParamLayout(tcfg);
  const ds = TORCH_CASE.dmaeSeed;
  const dmae = {
    config: cfg, teacherConfig: tcfg, distill: torchDistill, N, V, L, seed: ds, // student: seed; teacher: seed + 1; imgs: seed + 2; maskings[t]: seed + 3 + t
    student: tensors(sLayout, perturbedParams(sLayout, cfg, ds)),
    teacher: tensors(tLayout, perturbedParams(tLayout, tcfg, ds + 1)), // a whole MAE checkpoint; blocks 0..kT are used
    imgs: Array.from(randn(imgsLen, ds + 2)),
    maskings: Array.from({ length: steps }, (_, t) => masking(testMasking(N, L, V, ds + 3 + t))),
    optimizer: optimiser(sLayout),
  };
  return {
    about: 'Inputs of the PyTorch fixtures: written by scripts/torch-fixtures/export-inputs.ts, read by make_fixtures.py and test/engine/torch-fixtures.test.ts. Parameters are float32 values; Linear weights (out, in); images [N, C, H, W]; masking ids per AdamW step (step 0 is also the gradient check).',
    command: 'npx tsx scripts/torch-fixtures/export-inputs.ts',
    mae, dmae,
  };
}

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, '../../test/fixtures/torch/inputs.json');
mkdirSync(dirname(out), { recursive: true });
writeFileSync(out, JSON.stringify(build()) + '\n');
console.log(`wrote ${out}`);
