/**
 * Reconstruction pictures, as MAE's demo notebook draws them: for each image, the original, the
 * masked input, the reconstruction, and the reconstruction with the visible patches pasted back.
 * Pure TypeScript (RGB bytes out), so the browser and the Node command draw the same thing.
 *
 * The prediction is per patch in the target's order ([row][col][channel], recipe §1). With
 * norm_pix_loss the model predicts standardised patches; for display each predicted patch is
 * mapped back with its target patch's own mean and unbiased variance
 * (pred·sqrt(var + 1e-6) + mean), as MAE's visualisation does. Pixels are then un-normalised
 * with the dataset's mean/std and clamped to [0, 255]. Masked patches show as mid-gray.
 */
import { numPatches, patchDim, type MaeConfig } from './config';

export interface RgbImage {
  width: number;
  height: number;
  /** [height·width·3] RGB bytes, row-major. */
  data: Uint8Array;
}

/** Image n of imgs[N, C, S, S] as patch vectors [L, P] in the target's order ([row][col][channel]). */
export function patchifyImage(cfg: MaeConfig, imgs: ArrayLike<number>, n: number): Float64Array {
  const { imgSize: S, patchSize: p, inChans: C } = cfg;
  const g = S / p, L = g * g, P = p * p * C;
  const out = new Float64Array(L * P);
  for (let gh = 0; gh < g; gh++)
    for (let gw = 0; gw < g; gw++)
      for (let i = 0; i < p; i++)
        for (let j = 0; j < p; j++)
          for (let c = 0; c < C; c++) out[(gh * g + gw) * P + (i * p + j) * C + c] = imgs[((n * C + c) * S + gh * p + i) * S + gw * p + j];
  return out;
}

/** patches [L, P] → image [C, S, S] (MAE's unpatchify). */
export function unpatchify(cfg: MaeConfig, patches: ArrayLike<number>): Float64Array {
  const { imgSize: S, patchSize: p, inChans: C } = cfg;
  const g = S / p, P = p * p * C;
  const out = new Float64Array(C * S * S);
  for (let gh = 0; gh < g; gh++)
    for (let gw = 0; gw < g; gw++)
      for (let i = 0; i < p; i++)
        for (let j = 0; j < p; j++)
          for (let c = 0; c < C; c++) out[(c * S + gh * p + i) * S + gw * p + j] = patches[(gh * g + gw) * P + (i * p + j) * C + c];
  return out;
}

/** The prediction of image n in pixel space (normalised like the input): norm_pix undone per patch. */
export function predictionPixels(cfg: MaeConfig, imgs: ArrayLike<number>, pred: ArrayLike<number>, n: number): Float64Array {
  const L = numPatches(cfg), P = patchDim(cfg);
  const target = patchifyImage(cfg, imgs, n);
  const out = new Float64Array(L * P);
  for (let l = 0; l < L; l++) {
    let mean = 0, varSum = 0;
    if (cfg.normPixLoss) {
      for (let k = 0; k < P; k++) mean += target[l * P + k];
      mean /= P;
      for (let k = 0; k < P; k++) varSum += (target[l * P + k] - mean) ** 2;
    }
    const sd = cfg.normPixLoss ? Math.sqrt(varSum / Math.max(1, P - 1) + 1e-6) : 1;
    for (let k = 0; k < P; k++) out[l * P + k] = pred[(n * L + l) * P + k] * sd + mean;
  }
  return unpatchify(cfg, out);
}

export interface GridOptions {
  cfg: MaeConfig;
  /** [N, C, S, S] the model's input (normalised with mean/std). */
  imgs: ArrayLike<number>;
  /** [N, L, P] the model's prediction. */
  pred: ArrayLike<number>;
  /** [N, L] 1 = masked. */
  mask: ArrayLike<number>;
  /** The dataset's per-channel normalisation, to map back to [0, 1]. */
  mean: readonly number[];
  std: readonly number[];
  /** Images (rows) to draw; default all N. */
  count?: number;
  /** Integer upscale of each image (nearest neighbour); default so that a cell is ≥ 96 px. */
  scale?: number;
}

/** The grid's columns (original, masked, reconstruction, reconstruction + visible) and the gap around cells, in pixels. */
export const GRID_COLUMNS = 4;
export const GRID_GAP = 2;
const MASKED = 128;
const BACKGROUND = 32;

/**
 * Distinct grey levels (the first channel) in each column of a reconstruction grid, all rows of
 * that column's cells together: a blank or flat picture has one or two, a real one dozens. The
 * worker counts them beside the picture, so that the page's "not blank" check costs it nothing.
 */
export function gridColumnLevels(img: { data: ArrayLike<number>; width: number }, channels: number, grid: { rows: number; columns: number; cell: number; gap: number }): number[] {
  const { data, width } = img, { rows, cell, gap } = grid;
  return Array.from({ length: grid.columns }, (_, col) => {
    const seen = new Uint8Array(256); // a table, not a Set
    let n = 0;
    const x0 = gap + col * (cell + gap);
    for (let r = 0; r < rows; r++) {
      const y0 = gap + r * (cell + gap);
      for (let y = y0; y < y0 + cell; y++) {
        for (let x = x0; x < x0 + cell; x++) {
          const v = data[channels * (y * width + x)] & 255;
          if (!seen[v]) (seen[v] = 1), n++;
        }
      }
    }
    return n;
  });
}

/** Rows of [original | masked | reconstruction | reconstruction + visible]. */
export function reconstructionGrid(o: GridOptions): RgbImage {
  const { cfg } = o;
  const S = cfg.imgSize, C = cfg.inChans, p = cfg.patchSize, g = S / p, L = g * g;
  const N = o.count ?? Math.floor(o.mask.length / L);
  const sc = o.scale ?? Math.max(1, Math.ceil(96 / S));
  const cell = S * sc, cols = GRID_COLUMNS, GAP = GRID_GAP;
  const width = cols * cell + (cols + 1) * GAP, height = N * cell + (N + 1) * GAP;
  const data = new Uint8Array(width * height * 3).fill(BACKGROUND);
  const toByte = (v: number, c: number) => Math.max(0, Math.min(255, Math.round((v * o.std[c] + o.mean[c]) * 255)));
  for (let n = 0; n < N; n++) {
    const recon = predictionPixels(cfg, o.imgs, o.pred, n);
    for (let y = 0; y < S; y++) {
      for (let x = 0; x < S; x++) {
        const masked = o.mask[n * L + Math.floor(y / p) * g + Math.floor(x / p)] === 1;
        const rgb: number[][] = [[], [], [], []];
        for (let c = 0; c < 3; c++) {
          const ch = C === 1 ? 0 : c;
          const orig = toByte(o.imgs[((n * C + ch) * S + y) * S + x], ch);
          const rec = toByte(recon[(ch * S + y) * S + x], ch);
          rgb[0].push(orig);
          rgb[1].push(masked ? MASKED : orig);
          rgb[2].push(rec);
          rgb[3].push(masked ? rec : orig);
        }
        for (let col = 0; col < cols; col++) {
          const x0 = GAP + col * (cell + GAP) + x * sc, y0 = GAP + n * (cell + GAP) + y * sc;
          for (let dy = 0; dy < sc; dy++)
            for (let dx = 0; dx < sc; dx++) {
              const at = ((y0 + dy) * width + x0 + dx) * 3;
              data[at] = rgb[col][0];
              data[at + 1] = rgb[col][1];
              data[at + 2] = rgb[col][2];
            }
        }
      }
    }
  }
  return { width, height, data };
}
