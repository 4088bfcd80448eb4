/**
 * MAE's `random_masking`, on the CPU: the noise is drawn by the caller, the ids are uploaded.
 * Pure TypeScript shared by the GPU wrappers, the float64 reference and the engine, so it
 * imports nothing of either.
 */

export interface Masking {
  /** [N·lenKeep] the kept patch indices of each image, in shuffled order (ids_shuffle[:, :len_keep]). */
  idsKeep: Uint32Array;
  /** [N·L] ids_restore = argsort(ids_shuffle): patch l sits at shuffled position idsRestore[l]. */
  idsRestore: Uint32Array;
  /** [N·L] 1 = masked, 0 = kept, in the original patch order. */
  mask: Float32Array;
}

/**
 * ids_shuffle = argsort(noise) (ascending, stable), ids_restore = argsort(ids_shuffle), keep
 * the first lenKeep. noise[N·L] is uniform in [0, 1) in the reference.
 */
export function randomMasking(noise: Float32Array, N: number, L: number, lenKeep: number): Masking {
  if (noise.length !== N * L) throw new Error(`randomMasking: noise has ${noise.length} values, expected N·L = ${N * L}.`);
  if (!(Number.isInteger(lenKeep) && lenKeep >= 1 && lenKeep <= L)) throw new Error(`randomMasking: lenKeep = ${lenKeep} must be an integer in [1, ${L}].`);
  const idsKeep = new Uint32Array(N * lenKeep);
  const idsRestore = new Uint32Array(N * L);
  const mask = new Float32Array(N * L);
  const shuffle = new Uint32Array(L);
  for (let n = 0; n < N; n++) {
    const base = n * L;
    for (let l = 0; l < L; l++) shuffle[l] = l;
    // Stable: ties keep the lower index first (explicitly, not trusting the engine's sort).
    shuffle.sort((a, b) => noise[base + a] - noise[base + b] || a - b);
    for (let i = 0; i < L; i++) idsRestore[base + shuffle[i]] = i;
    for (let i = 0; i < lenKeep; i++) idsKeep[n * lenKeep + i] = shuffle[i];
    for (let l = 0; l < L; l++) mask[base + l] = idsRestore[base + l] < lenKeep ? 0 : 1;
  }
  return { idsKeep, idsRestore, mask };
}

/**
 * The number of visible patches for a mask ratio, as the reference computes it:
 * `int(L * (1 - mask_ratio))` in float64 (truncation: 95 % of 196 keeps 9, 98 % keeps 3),
 * clamped to [1, L] so that at least one patch is visible.
 */
export function lenKeepFor(L: number, maskRatio: number): number {
  return Math.min(L, Math.max(1, Math.trunc(L * (1 - maskRatio))));
}

/** The mask ratio that a number of visible patches amounts to (for showing both). */
export function maskRatioFor(L: number, visible: number): number {
  return 1 - visible / L;
}
