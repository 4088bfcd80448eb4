/**
 * Seeded randomness for shuffling, splits, augmentation and the procedural dataset.
 * sfc32 (small fast counter, 128-bit state): its whole state is four u32s, so a loader's
 * position can be saved and restored exactly. Seeds are expanded with splitmix32.
 */

export function splitmix32(x: number): number {
  x = (x + 0x9e3779b9) | 0;
  let z = x;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return (z ^ (z >>> 16)) >>> 0;
}

/** Mix several integers into one u32 (for per-(seed, epoch, index) streams). */
export function hashInts(...xs: number[]): number {
  let h = 0x2545f491;
  for (const x of xs) h = splitmix32((h ^ splitmix32(x | 0) ^ Math.floor(x / 4294967296)) >>> 0);
  return h;
}

export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(seed: number | readonly [number, number, number, number]) {
    if (typeof seed === 'number') {
      const s = hashInts(seed);
      this.a = splitmix32(s);
      this.b = splitmix32(this.a);
      this.c = splitmix32(this.b);
      this.d = 1;
      for (let i = 0; i < 12; i++) this.nextU32();
    } else {
      [this.a, this.b, this.c, this.d] = seed;
    }
  }

  get state(): [number, number, number, number] {
    return [this.a, this.b, this.c, this.d];
  }

  nextU32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  /** Uniform in [0, 1), 32 bits of resolution. */
  float(): number {
    return this.nextU32() / 4294967296;
  }

  uniform(lo: number, hi: number): number {
    return lo + (hi - lo) * this.float();
  }

  /** Uniform integer in [0, n), unbiased (rejection). */
  int(n: number): number {
    if (n <= 1) return 0;
    const limit = 4294967296 - (4294967296 % n);
    let x = this.nextU32();
    while (x >= limit) x = this.nextU32();
    return x % n;
  }

  /** Fisher–Yates permutation of 0..n-1. */
  permutation(n: number): Uint32Array {
    const p = new Uint32Array(n);
    for (let i = 0; i < n; i++) p[i] = i;
    for (let i = n - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const t = p[i];
      p[i] = p[j];
      p[j] = t;
    }
    return p;
  }
}
