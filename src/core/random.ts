/**
 * Mulberry32: a tiny seeded stream of uniforms in [0, 1). Used where no saveable state is needed
 * (initialisation, test and benchmark data); the data loader's resumable generator is
 * src/data/rng.ts.
 */
export function mulberry32(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
