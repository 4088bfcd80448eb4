import { describe, expect, it } from 'vitest';
import {
  MAX_HEADER_BYTES, SafetensorsError, f16ToF32, f32ToBf16, f32ToF16, readSafetensors, toFloat32, writeSafetensors, type TensorToWrite,
} from '../../src/io/safetensors';
import { randn, rng } from '../helpers';

const enc = new TextEncoder();

/** A file from a raw header object and a data section (for hand-made hostile files). */
function rawFile(header: unknown, data: Uint8Array | number, headerText?: string): Uint8Array {
  const json = enc.encode(headerText ?? JSON.stringify(header));
  const d = typeof data === 'number' ? new Uint8Array(data) : data;
  const out = new Uint8Array(8 + json.length + d.length);
  new DataView(out.buffer).setUint32(0, json.length, true);
  out.set(json, 8);
  out.set(d, 8 + json.length);
  return out;
}

function expectError(bytes: Uint8Array, pattern: RegExp, tensor?: string): void {
  let err: unknown;
  try {
    const c = readSafetensors(bytes, { file: 'bad.safetensors' });
    for (const t of c.tensors.values()) if (['F32', 'F64', 'F16', 'BF16'].includes(t.dtype)) toFloat32(t);
  } catch (e) {
    err = e;
  }
  expect(err, `expected an error matching ${pattern}`).toBeInstanceOf(SafetensorsError);
  const se = err as SafetensorsError;
  expect(se.message).toMatch(/^bad\.safetensors/);
  expect(se.message).toMatch(pattern);
  if (tensor !== undefined) expect(se.tensor).toBe(tensor);
}

describe('safetensors round trip', () => {
  it('writes and reads F32 tensors, metadata and the layout the reference writer uses', () => {
    const a = randn(2 * 3 * 5, 1), b = randn(7, 2);
    const bytes = writeSafetensors(
      [{ name: 'blocks.0.attn.qkv.weight', shape: [6, 5], data: a }, { name: 'cls_token', shape: [1, 1, 7], data: b }, { name: 'empty', shape: [0, 4], data: [] }],
      { format: 'pt', note: 'é ünïcode' },
    );
    const hlen = new DataView(bytes.buffer).getUint32(0, true);
    expect(hlen % 8).toBe(0); // data 8-byte aligned
    const c = readSafetensors(bytes);
    expect(c.metadata).toEqual({ format: 'pt', note: 'é ünïcode' });
    expect([...c.tensors.keys()]).toEqual(['blocks.0.attn.qkv.weight', 'cls_token', 'empty']);
    const qkv = c.tensors.get('blocks.0.attn.qkv.weight')!;
    expect(qkv.dtype).toBe('F32');
    expect(qkv.shape).toEqual([6, 5]);
    expect(toFloat32(qkv)).toEqual(Float32Array.from(a));
    expect(toFloat32(c.tensors.get('cls_token')!)).toEqual(Float32Array.from(b));
    expect(toFloat32(c.tensors.get('empty')!).length).toBe(0);
  });

  it('reads F64, F16 and BF16 and converts them to float32', () => {
    const x = [0, -0, 1, -2.5, 65504, 6.1e-5, 5.96e-8, 1e-3, 3.14159, -1234.5, Infinity, -Infinity];
    const bytes = writeSafetensors([
      { name: 'd', shape: [x.length], data: x, dtype: 'F64' },
      { name: 'h', shape: [x.length], data: x, dtype: 'F16' },
      { name: 'b', shape: [x.length], data: x, dtype: 'BF16' },
      { name: 'i', shape: [2], data: [3, -4], dtype: 'I64' },
    ]);
    const c = readSafetensors(bytes);
    expect(Array.from(toFloat32(c.tensors.get('d')!))).toEqual(x.map(Math.fround));
    const h = toFloat32(c.tensors.get('h')!);
    x.forEach((v, i) => (Number.isFinite(v) ? expect(Math.abs(h[i] - v)).toBeLessThanOrEqual(Math.abs(v) / 1024 + 3e-8) : expect(h[i]).toBe(v)));
    for (let i = 0; i < x.length; i++) expect(h[i]).toBe(f16ToF32(f32ToF16(x[i]))); // exact widening
    const bf = toFloat32(c.tensors.get('b')!);
    x.forEach((v, i) => (Number.isFinite(v) ? expect(Math.abs(bf[i] - v)).toBeLessThanOrEqual(Math.abs(v) / 128) : expect(bf[i]).toBe(v)));
    expect(() => toFloat32(c.tensors.get('i')!, 'x.safetensors')).toThrow(/x\.safetensors: tensor "i": dtype I64 is not a float type/);
  });

  it('f16 and bf16 conversions round to nearest even and keep specials', () => {
    expect(f32ToF16(1 + 2 ** -11)).toBe(0x3c00); // tie → even (down)
    expect(f32ToF16(1 + 3 * 2 ** -11)).toBe(0x3c02); // tie → even (up)
    expect(f32ToF16(1e6)).toBe(0x7c00);
    expect(Number.isNaN(f16ToF32(f32ToF16(NaN)))).toBe(true);
    expect(f16ToF32(0x0001)).toBe(2 ** -24);
    expect(f32ToBf16(1)).toBe(0x3f80);
    expect(Number.isNaN(f16ToF32(0x7e00))).toBe(true);
  });
});

describe('safetensors hostile files', () => {
  const ok = { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } };

  it('rejects files too short, huge or truncated headers, and non-JSON', () => {
    expectError(new Uint8Array(5), /too short/);
    const huge = new Uint8Array(16);
    new DataView(huge.buffer).setUint32(0, MAX_HEADER_BYTES + 1, true);
    expectError(huge, /more than the 100000000-byte limit/);
    const u64 = new Uint8Array(16);
    new DataView(u64.buffer).setUint32(4, 1, true);
    expectError(u64, /limit/);
    const trunc = rawFile(ok, 8).subarray(0, 20);
    expectError(trunc, /truncated/);
    expectError(rawFile(null, 0, '{"a": [1, 2'), /not valid JSON/);
    expectError(rawFile(null, 0, '[1, 2, 3]'), /does not start with "\{"/);
    // 200 000 levels of nesting: a clear error, not a stack overflow
    expectError(rawFile(null, 0, `{"a":${'['.repeat(200_000)}${']'.repeat(200_000)}}`), /header entry is not an object/, 'a');
    const badUtf8 = rawFile(null, 0, '{"a":  1}');
    badUtf8[12] = 0xff;
    expectError(badUtf8, /not valid UTF-8/);
  });

  it('rejects unknown dtypes, bad shapes and offsets, and byte-count mismatches, naming the tensor', () => {
    expectError(rawFile({ w: { dtype: 'F8_E9', shape: [2], data_offsets: [0, 2] } }, 2), /unknown dtype "F8_E9"/, 'w');
    expectError(rawFile({ w: { dtype: 'F32', shape: [2, -1], data_offsets: [0, 8] } }, 8), /shape \[2,-1\] is not a list/, 'w');
    expectError(rawFile({ w: { dtype: 'F32', shape: [2.5], data_offsets: [0, 8] } }, 8), /shape/, 'w');
    expectError(rawFile({ w: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, 8), /needs 12 bytes, but data_offsets \[0, 8\] hold 8/, 'w');
    expectError(rawFile({ w: { dtype: 'F32', shape: [2], data_offsets: [8, 16] } }, 8), /lie outside the 8-byte data section/, 'w');
    expectError(rawFile({ w: { dtype: 'F32', shape: [2], data_offsets: [8, 0] } }, 8), /end before they begin/, 'w');
    expectError(rawFile({ w: { dtype: 'F32', shape: [2], data_offsets: [0] } }, 8), /data_offsets/, 'w');
    expectError(rawFile({ w: { dtype: 'F32', shape: [2 ** 40, 2 ** 40], data_offsets: [0, 8] } }, 8), /needs/, 'w');
    expectError(rawFile({ w: [1, 2] }, 0), /not an object/, 'w');
    expectError(rawFile({ w: { shape: [2], data_offsets: [0, 8] } }, 8), /no dtype/, 'w');
    expectError(rawFile({ __metadata__: { a: 1 } }, 0), /__metadata__\["a"\] is a number/);
  });

  it('rejects overlapping offsets, holes, unindexed bytes and duplicate names', () => {
    expectError(
      rawFile({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }, 12),
      /bytes \[4, 12\) overlap those of tensor "a" \[0, 8\)/, 'b',
    );
    expectError(
      rawFile({ a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] }, b: { dtype: 'F32', shape: [1], data_offsets: [8, 12] } }, 12),
      /bytes \[4, 8\) before it belong to no tensor/, 'b',
    );
    expectError(rawFile(ok, 12), /cover 8 bytes of the 12-byte data section/);
    const dup = '{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}';
    expectError(rawFile(null, 4, dup), /appears twice/, 'a');
    // Unordered in the header but packed: accepted (JSON objects have no order).
    const c = readSafetensors(rawFile({ b: { dtype: 'F32', shape: [1], data_offsets: [4, 8] }, a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }, 8));
    expect([...c.tensors.keys()]).toEqual(['a', 'b']);
  });

  it('refuses to write duplicate names or wrong value counts', () => {
    expect(() => writeSafetensors([{ name: 'a', shape: [1], data: [1] }, { name: 'a', shape: [1], data: [1] }])).toThrow(SafetensorsError);
    expect(() => writeSafetensors([{ name: 'a', shape: [2], data: [1] }])).toThrow(/holds 2 values but 1/);
  });
});

describe('safetensors fuzz', () => {
  /** Reads `bytes`, converting every float tensor; only a result or a SafetensorsError may come out. */
  function survive(bytes: Uint8Array): 'ok' | 'error' {
    try {
      const c = readSafetensors(bytes, { file: 'fuzz' });
      for (const t of c.tensors.values()) if (['F32', 'F64', 'F16', 'BF16'].includes(t.dtype)) toFloat32(t, 'fuzz');
      return 'ok';
    } catch (e) {
      if (e instanceof SafetensorsError) return 'error';
      throw new Error(`fuzz: a non-SafetensorsError escaped: ${(e as Error)?.stack ?? e}`);
    }
  }

  function validFile(r: () => number): Uint8Array {
    const dtypes = ['F32', 'F64', 'F16', 'BF16', 'I64', 'U8'] as const;
    const n = 1 + Math.floor(r() * 4);
    const ts: TensorToWrite[] = [];
    for (let i = 0; i < n; i++) {
      const shape = Array.from({ length: Math.floor(r() * 3) }, () => Math.floor(r() * 4));
      const len = shape.reduce((a, b) => a * b, 1);
      ts.push({ name: `t${i}.weight`, shape, data: Array.from({ length: len }, () => Math.floor(r() * 200 - 100)), dtype: dtypes[Math.floor(r() * dtypes.length)] });
    }
    return writeSafetensors(ts, r() < 0.5 ? { k: 'v' } : undefined);
  }

  it('seeded mutations of valid files and random bytes give a result or a SafetensorsError', () => {
    const r = rng(20261130);
    const counts = { ok: 0, error: 0 };
    for (let i = 0; i < 400; i++) {
      let b = validFile(r);
      expect(survive(b)).toBe('ok');
      const kind = i % 5;
      const hlen = new DataView(b.buffer).getUint32(0, true);
      if (kind === 0) {
        for (let k = 0; k < 1 + Math.floor(r() * 4); k++) b[Math.floor(r() * b.length)] = Math.floor(r() * 256); // random bytes anywhere
      } else if (kind === 1) {
        // digits of the header (shapes, offsets, the length) changed: semantic errors
        const digits = [...b.subarray(8, 8 + hlen)].map((c, j) => (c >= 0x30 && c <= 0x39 ? j + 8 : -1)).filter((j) => j >= 0);
        for (let k = 0; k < 1 + Math.floor(r() * 3) && digits.length; k++) b[digits[Math.floor(r() * digits.length)]] = 0x30 + Math.floor(r() * 10);
        if (r() < 0.3) b[Math.floor(r() * 8)] = Math.floor(r() * 256);
      } else if (kind === 2) {
        b = b.slice(0, Math.floor(r() * b.length)); // truncated
      } else if (kind === 3) {
        const extra = new Uint8Array(1 + Math.floor(r() * 16)).map(() => Math.floor(r() * 256)); // trailing junk
        const c = new Uint8Array(b.length + extra.length);
        c.set(b);
        c.set(extra, b.length);
        b = c;
      } else {
        b = new Uint8Array(Math.floor(r() * 64)).map(() => Math.floor(r() * 256)); // random bytes, plausible length
        if (b.length >= 8 && r() < 0.7) new DataView(b.buffer).setUint32(0, Math.floor(r() * (b.length - 7)), true);
        if (b.length > 9) b[8] = 0x7b;
      }
      counts[survive(b)]++;
    }
    expect(counts.ok + counts.error).toBe(400);
    expect(counts.error).toBeGreaterThan(150); // the mutations do break files
  });
});
