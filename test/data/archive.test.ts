/** gzip, zip and tar as hostile input: real files read, bombs and damage refused, fuzzed. */
import { describe, expect, it } from 'vitest';
import { zipSync } from 'fflate';
import { Budget, crc32, gunzip, unzip, untar } from '../../src/data/formats/archive';
import { DEFAULT_LIMITS, type ImportLimits } from '../../src/data/errors';
import { Rng } from '../../src/data/rng';
import { expectDatasetError, fuzz, gzip, mutations, randomBytes, tar, zip } from './fixtures';

const budget = (limits: Partial<ImportLimits> = {}) => new Budget({ ...DEFAULT_LIMITS, ...limits });
const text = (s: string) => new TextEncoder().encode(s);

describe('gzip', () => {
  it('reads a gzip stream and checks its CRC', () => {
    const data = randomBytes(new Rng(1), 100_000);
    expect(gunzip(gzip(data), 'a.gz', budget())).toEqual(data);
    const bad = gzip(data);
    bad[bad.length - 6] ^= 1; // CRC
    expect(() => gunzip(bad, 'a.gz', budget())).toThrow(/a\.gz: .*checksum/);
  });

  it('refuses a gzip bomb from its ISIZE before inflating, and a lying ISIZE while inflating', async () => {
    const bomb = gzip(new Uint8Array(8 * 2 ** 20)); // 8 MiB of zeros → ~8 KiB
    await expectDatasetError(() => gunzip(bomb, 'bomb.gz', budget({ maxUncompressedBytes: 2 ** 20 })), 'too-large', 'bomb.gz', /unpack/);
    const liar = bomb.slice();
    new DataView(liar.buffer).setUint32(liar.length - 4, 1000, true); // claims 1000 bytes
    const t0 = performance.now();
    await expectDatasetError(() => gunzip(liar, 'liar.gz', budget()), 'corrupt', 'liar.gz', /more than the 1000 bytes/);
    expect(performance.now() - t0).toBeLessThan(2000);
  });

  it('names truncation', async () => {
    const g = gzip(randomBytes(new Rng(2), 50_000));
    await expectDatasetError(() => gunzip(g.subarray(0, g.length / 2), 'half.gz', budget()), 'truncated', 'half.gz');
    await expectDatasetError(() => gunzip(g.subarray(0, 12), 'tiny.gz', budget()), 'truncated', 'tiny.gz');
    await expectDatasetError(() => gunzip(text('hello world, not gzip'), 'x.gz', budget()), 'bad-magic', 'x.gz');
  });
});

describe('zip', () => {
  it('reads deflated and stored entries with folders', () => {
    const files = { 'd/a.txt': text('alpha'), 'd/sub/b.bin': randomBytes(new Rng(3), 5000), 'c.txt': text('') };
    for (const level of [0, 6] as const) {
      const entries = unzip(zip(files, level), 'x.zip', budget());
      expect(entries.map((e) => e.path).sort()).toEqual(['x.zip/c.txt', 'x.zip/d/a.txt', 'x.zip/d/sub/b.bin']);
      expect(entries.find((e) => e.path.endsWith('b.bin'))!.data).toEqual(files['d/sub/b.bin']);
    }
  });

  it('refuses a zip bomb from its directory, before inflating anything', async () => {
    const zero = new Uint8Array(2 * 2 ** 20);
    const bomb = zipSync(Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`z${i}`, [zero, { level: 9 }]])) as never);
    expect(bomb.length).toBeLessThan(2 ** 17);
    const t0 = performance.now();
    await expectDatasetError(() => unzip(bomb, 'bomb.zip', budget({ maxUncompressedBytes: 16 * 2 ** 20 })), 'too-large', 'bomb.zip', /unpack to 40 MiB/);
    expect(performance.now() - t0).toBeLessThan(100); // nothing was inflated
  });

  it('stops an entry that inflates past its declared size', async () => {
    const z = zip({ 'a.bin': new Uint8Array(4 * 2 ** 20) });
    const dv = new DataView(z.buffer);
    // Patch the declared uncompressed size (central directory at the EOCD's offset) to 100 bytes.
    const eocd = z.length - 22;
    const cd = dv.getUint32(eocd + 16, true);
    dv.setUint32(cd + 24, 100, true);
    await expectDatasetError(() => unzip(z, 'liar.zip', budget()), 'corrupt', 'liar.zip/a.bin', /more than the 100 bytes/);
  });

  it('refuses too many entries, encryption, and unknown methods by name', async () => {
    const many = zip(Object.fromEntries(Array.from({ length: 30 }, (_, i) => [`f${i}.txt`, text('x')])));
    await expectDatasetError(() => unzip(many, 'many.zip', budget({ maxEntries: 10 })), 'too-large', 'many.zip', /30 files/);
    const z = zip({ 'a.txt': text('hello hello hello') });
    const dv = new DataView(z.buffer);
    const cd = dv.getUint32(z.length - 22 + 16, true);
    const enc = z.slice();
    new DataView(enc.buffer).setUint16(cd + 8, 1, true);
    await expectDatasetError(() => unzip(enc, 'e.zip', budget()), 'unsupported', 'e.zip/a.txt', /encrypted/);
    const m = z.slice();
    new DataView(m.buffer).setUint16(cd + 10, 14, true); // LZMA
    await expectDatasetError(() => unzip(m, 'm.zip', budget()), 'unsupported', 'm.zip/a.txt', /method 14/);
  });

  it('names a cut-short zip and a non-zip', async () => {
    const z = zip({ 'a.bin': randomBytes(new Rng(4), 3000) });
    await expectDatasetError(() => unzip(z.subarray(0, z.length - 40), 'cut.zip', budget()), 'truncated', 'cut.zip');
    await expectDatasetError(() => unzip(randomBytes(new Rng(5), 500), 'r.zip', budget()), 'bad-magic', 'r.zip');
  });
});

describe('tar', () => {
  it('reads GNU, ustar and pax tars with long names; tar.gz through gunzip', () => {
    const long = `${'deep/'.repeat(30)}file-with-a-name-longer-than-one-hundred-characters.bin`;
    const files = { 'a/x.txt': text('x'), [long]: randomBytes(new Rng(6), 1000) };
    for (const format of ['gnu', 'pax'] as const) {
      const entries = untar(tar(files, { format }), 't.tar', budget());
      expect(entries.map((e) => e.path).sort()).toEqual([`t.tar/${long}`, 't.tar/a/x.txt'].sort());
      expect(entries.find((e) => e.path.endsWith('.bin'))!.data).toEqual(files[long]);
    }
    expect(untar(tar({ 'u/v.txt': text('v') }, { format: 'ustar' }), 'u.tar', budget())[0].path).toBe('u.tar/u/v.txt');
    const tgz = tar(files, { gzip: true });
    expect(untar(gunzip(tgz, 't.tar.gz', budget()), 't.tar.gz', budget())).toHaveLength(2);
  });

  it('names a header that promises more data than exists, and a damaged header', async () => {
    const t = tar({ 'a.bin': new Uint8Array(5000).fill(7) });
    await expectDatasetError(() => untar(t.subarray(0, 3000), 'cut.tar', budget()), 'truncated', 'cut.tar', /promises 5000 bytes/);
    const bad = t.slice();
    bad[10] ^= 0x40;
    await expectDatasetError(() => untar(bad, 'bad.tar', budget()), 'bad-magic', 'bad.tar');
  });
});

describe('fuzz', () => {
  const limits = { maxUncompressedBytes: 16 * 2 ** 20 };
  it('gzip: 300 mutations and 100 random inputs give data or a DatasetError', async () => {
    const valid = gzip(randomBytes(new Rng(8), 3000));
    const rng = new Rng(9);
    const t = await fuzz([...mutations(valid, 300, 10), ...Array.from({ length: 100 }, () => Uint8Array.of(0x1f, 0x8b, ...randomBytes(rng, 600)))], (d) => gunzip(d, 'f.gz', budget(limits)));
    expect(t.rejected).toBeGreaterThan(200);
  });

  it('zip: 400 mutations and 100 random inputs', async () => {
    const valid = zip({ 'a/b.txt': text('hello '.repeat(100)), 'c.bin': randomBytes(new Rng(11), 700), 'd/e.txt': text('e') });
    const rng = new Rng(12);
    const t = await fuzz([...mutations(valid, 400, 13), ...Array.from({ length: 100 }, () => randomBytes(rng, 2000))], (d) => {
      const entries = unzip(d, 'f.zip', budget(limits));
      for (const e of entries) expect(e.data).toBeInstanceOf(Uint8Array);
      return entries;
    });
    expect(t.rejected).toBeGreaterThan(250);
  });

  it('tar: 400 mutations and 100 random inputs', async () => {
    const valid = tar({ 'a/b.txt': text('hello'), 'c.bin': randomBytes(new Rng(14), 1500) });
    const rng = new Rng(15);
    await fuzz([...mutations(valid, 400, 16), ...Array.from({ length: 100 }, () => randomBytes(rng, 3000))], (d) => untar(d, 'f.tar', budget(limits)));
  });

  it('crc32 matches the standard check value', () => {
    expect(crc32(text('123456789'))).toBe(0xcbf43926);
  });
});
