/**
 * safetensors (https://github.com/huggingface/safetensors), the format PyTorch, timm and the
 * Hugging Face hub share:
 *
 *   u64 little-endian N | N bytes of UTF-8 JSON header | raw tensor data
 *   header = { "<name>": { "dtype": "F32", "shape": [..], "data_offsets": [begin, end] }, ...,
 *              "__metadata__": { "<key>": "<string>" } (optional) }
 *
 * Offsets are bytes into the data section; tensors are row-major little-endian, packed with no
 * holes. Pure TypeScript on byte arrays (no file system), so the browser uses it unchanged.
 *
 * The reader treats its input as hostile: it bounds the header size, and rejects truncated
 * files, JSON errors, duplicate names, unknown dtypes, shape/byte-count mismatches, and offsets
 * that lie outside the data, overlap or leave holes — each a SafetensorsError that names the
 * file and the tensor. It never allocates more than the input's size plus the header it parsed.
 */

export type SafetensorsDtype = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

/** Bytes per element of every dtype the reader accepts. */
export const DTYPE_BYTES: Readonly<Record<SafetensorsDtype, number>> = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1 };

/** Float dtypes that toFloat32 converts (the teacher import accepts any of them). */
export const FLOAT_DTYPES: readonly SafetensorsDtype[] = ['F64', 'F32', 'F16', 'BF16'];

/** Largest JSON header the reader parses by default (the reference implementation's limit). */
export const MAX_HEADER_BYTES = 100_000_000;

export class SafetensorsError extends Error {
  constructor(
    /** The file (or what the caller called it). */
    readonly file: string,
    /** The tensor concerned, when one is. */
    readonly tensor: string | undefined,
    problem: string,
  ) {
    super(`${file}${tensor !== undefined ? `: tensor "${tensor}"` : ''}: ${problem}`);
    this.name = 'SafetensorsError';
  }
}

export interface SafetensorsTensor {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  /** The tensor's raw little-endian bytes: a view into the file, not a copy. */
  bytes: Uint8Array;
}

export interface SafetensorsContents {
  /** Tensors in data order. */
  tensors: Map<string, SafetensorsTensor>;
  /** `__metadata__` (string → string), empty when absent. */
  metadata: Record<string, string>;
}

export interface ReadOptions {
  /** Named in every error (a file name, "teacher upload"); default "safetensors file". */
  file?: string;
  maxHeaderBytes?: number;
}

const numel = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);

/**
 * The names of the top-level keys of a JSON object text, in order, duplicates kept.
 * JSON.parse silently keeps the last of duplicate keys; a safetensors header must not have any.
 * The text is known to be valid JSON (JSON.parse accepted it), so a small scanner suffices.
 */
function topLevelKeys(text: string): string[] {
  const keys: string[] = [];
  let depth = 0;
  let expectKey = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text.charCodeAt(i);
    if (ch === 0x22 /* " */) {
      const start = i;
      for (i++; i < text.length; i++) {
        const c = text.charCodeAt(i);
        if (c === 0x5c /* \ */) i++;
        else if (c === 0x22) break;
      }
      if (depth === 1 && expectKey) {
        keys.push(JSON.parse(text.slice(start, i + 1)) as string);
        expectKey = false;
      }
    } else if (ch === 0x7b /* { */ || ch === 0x5b /* [ */) {
      depth++;
      if (depth === 1) expectKey = true;
    } else if (ch === 0x7d /* } */ || ch === 0x5d /* ] */) {
      depth--;
    } else if (ch === 0x2c /* , */ && depth === 1) {
      expectKey = true;
    }
  }
  return keys;
}

/** Parses and checks a safetensors file; tensors are views into `bytes`. */
export function readSafetensors(bytes: Uint8Array, opts: ReadOptions = {}): SafetensorsContents {
  const file = opts.file ?? 'safetensors file';
  const maxHeader = opts.maxHeaderBytes ?? MAX_HEADER_BYTES;
  const fail = (problem: string, tensor?: string): never => {
    throw new SafetensorsError(file, tensor, problem);
  };
  if (bytes.byteLength < 8) fail(`${bytes.byteLength} bytes is too short for a safetensors file (it starts with an 8-byte header length).`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const lo = view.getUint32(0, true), hi = view.getUint32(4, true);
  const headerLen = hi * 2 ** 32 + lo;
  if (hi !== 0 || headerLen > maxHeader) fail(`the header claims ${headerLen} bytes, more than the ${maxHeader}-byte limit; this is not a safetensors file, or a hostile one.`);
  if (headerLen < 2) fail(`the header length ${headerLen} is too small for a JSON object.`);
  if (8 + headerLen > bytes.byteLength) fail(`the header claims ${headerLen} bytes but the file has only ${bytes.byteLength - 8} after the length; the file is truncated.`);
  let text = '';
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + headerLen));
  } catch {
    fail('the header is not valid UTF-8.');
  }
  if (!text.startsWith('{')) fail('the header does not start with "{"; not a safetensors file.');
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch (e) {
    fail(`the header is not valid JSON (${(e as Error).message}).`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) fail('the header is not a JSON object.');
  const entries = header as Record<string, unknown>;
  const keys = topLevelKeys(text);
  const seen = new Set<string>();
  for (const k of keys) {
    if (seen.has(k)) fail('the name appears twice in the header.', k);
    seen.add(k);
  }

  const dataStart = 8 + headerLen;
  const dataLen = bytes.byteLength - dataStart;
  const metadata: Record<string, string> = {};
  const infos: { name: string; dtype: SafetensorsDtype; shape: number[]; begin: number; end: number }[] = [];
  for (const name of Object.keys(entries)) {
    const v = entries[name];
    if (name === '__metadata__') {
      if (typeof v !== 'object' || v === null || Array.isArray(v)) fail('__metadata__ must be an object of strings.');
      for (const [mk, mv] of Object.entries(v as Record<string, unknown>)) {
        if (typeof mv !== 'string') fail(`__metadata__["${mk}"] is a ${mv === null ? 'null' : typeof mv}, not a string.`);
        metadata[mk] = mv as string;
      }
      continue;
    }
    if (typeof v !== 'object' || v === null || Array.isArray(v)) fail('its header entry is not an object with dtype, shape and data_offsets.', name);
    const e = v as Record<string, unknown>;
    const dtype = e.dtype;
    if (typeof dtype !== 'string') fail('it has no dtype string.', name);
    if (!Object.hasOwn(DTYPE_BYTES, dtype as string)) fail(`unknown dtype "${dtype}" (known: ${Object.keys(DTYPE_BYTES).join(', ')}).`, name);
    const shape = e.shape;
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) fail(`its shape ${JSON.stringify(shape)} is not a list of non-negative integers.`, name);
    const offs = e.data_offsets;
    if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((d) => Number.isSafeInteger(d) && d >= 0)) fail(`its data_offsets ${JSON.stringify(offs)} is not a pair of non-negative integers.`, name);
    const [begin, end] = offs as number[];
    if (begin > end) fail(`its data_offsets [${begin}, ${end}] end before they begin.`, name);
    if (end > dataLen) fail(`its data_offsets [${begin}, ${end}] lie outside the ${dataLen}-byte data section.`, name);
    const n = numel(shape as number[]);
    const want = n * DTYPE_BYTES[dtype as SafetensorsDtype];
    if (!Number.isSafeInteger(want) || want !== end - begin) {
      fail(`shape [${(shape as number[]).join(', ')}] of ${dtype} needs ${want} bytes, but data_offsets [${begin}, ${end}] hold ${end - begin}.`, name);
    }
    infos.push({ name, dtype: dtype as SafetensorsDtype, shape: [...(shape as number[])], begin, end });
  }
  // Packed with no overlap and no holes, as the reference implementation requires.
  infos.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let at = 0;
  for (let i = 0; i < infos.length; i++) {
    const t = infos[i];
    if (t.begin < at) fail(`its bytes [${t.begin}, ${t.end}) overlap those of tensor "${infos[i - 1].name}" [${infos[i - 1].begin}, ${infos[i - 1].end}).`, t.name);
    if (t.begin > at) fail(`bytes [${at}, ${t.begin}) before it belong to no tensor (the data must be packed).`, t.name);
    at = t.end;
  }
  if (at !== dataLen) fail(`the tensors cover ${at} bytes of the ${dataLen}-byte data section; the rest belongs to no tensor.`);

  const tensors = new Map<string, SafetensorsTensor>();
  for (const t of infos) tensors.set(t.name, { name: t.name, dtype: t.dtype, shape: t.shape, bytes: bytes.subarray(dataStart + t.begin, dataStart + t.end) });
  return { tensors, metadata };
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** IEEE half → float. */
export function f16ToF32(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 0x1f) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

const f32buf = new Float32Array(1);
const u32buf = new Uint32Array(f32buf.buffer);

/** float → IEEE half, round to nearest even (for writing F16 files, e.g. test teachers). */
export function f32ToF16(x: number): number {
  f32buf[0] = x;
  const b = u32buf[0];
  const sign = (b >>> 16) & 0x8000;
  const e = (b >>> 23) & 0xff;
  let m = b & 0x7fffff;
  if (e === 0xff) return sign | 0x7c00 | (m ? 0x200 : 0);
  let he = e - 127 + 15;
  if (he >= 0x1f) return sign | 0x7c00;
  if (he <= 0) {
    if (he < -10) return sign;
    m |= 0x800000;
    const shift = 14 - he;
    let hm = m >>> shift;
    const rem = m & ((1 << shift) - 1), half = 1 << (shift - 1);
    if (rem > half || (rem === half && hm & 1)) hm++;
    return sign | hm;
  }
  let hm = m >>> 13;
  const rem = m & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && hm & 1)) {
    hm++;
    if (hm === 0x400) {
      hm = 0;
      he++;
      if (he >= 0x1f) return sign | 0x7c00;
    }
  }
  return sign | (he << 10) | hm;
}

/** float → bfloat16, round to nearest even. */
export function f32ToBf16(x: number): number {
  f32buf[0] = x;
  const b = u32buf[0];
  if ((b & 0x7fffffff) > 0x7f800000) return (b >>> 16) | 0x40; // NaN stays NaN
  return ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
}

/** A float tensor's values as float32 (F32 copied; F64 rounded; F16/BF16 widened exactly). */
export function toFloat32(t: SafetensorsTensor, file = 'safetensors file'): Float32Array {
  const n = numel(t.shape);
  const v = new DataView(t.bytes.buffer, t.bytes.byteOffset, t.bytes.byteLength);
  switch (t.dtype) {
    case 'F32': {
      if (LITTLE_ENDIAN) return new Float32Array(t.bytes.slice().buffer); // slice: an aligned copy
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = v.getFloat32(4 * i, true);
      return out;
    }
    case 'F64': {
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = v.getFloat64(8 * i, true);
      return out;
    }
    case 'F16': {
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = f16ToF32(v.getUint16(2 * i, true));
      return out;
    }
    case 'BF16': {
      const out = new Float32Array(n);
      const u = new Uint32Array(out.buffer);
      for (let i = 0; i < n; i++) u[i] = v.getUint16(2 * i, true) << 16;
      return out;
    }
    default:
      throw new SafetensorsError(file, t.name, `dtype ${t.dtype} is not a float type (expected one of ${FLOAT_DTYPES.join(', ')}).`);
  }
}

export interface TensorToWrite {
  name: string;
  shape: readonly number[];
  /** Values; converted to `dtype` (float32 rounding for F32). Raw bytes are written as they are. */
  data: ArrayLike<number> | Uint8Array;
  /** Default F32. Raw `Uint8Array` data must already be in this dtype's little-endian bytes. */
  dtype?: SafetensorsDtype;
}

function encodeValues(t: TensorToWrite, dtype: SafetensorsDtype, out: DataView, at: number): void {
  const d = t.data;
  const n = d.length;
  switch (dtype) {
    case 'F32': for (let i = 0; i < n; i++) out.setFloat32(at + 4 * i, d[i], true); break;
    case 'F64': for (let i = 0; i < n; i++) out.setFloat64(at + 8 * i, d[i], true); break;
    case 'F16': for (let i = 0; i < n; i++) out.setUint16(at + 2 * i, f32ToF16(d[i]), true); break;
    case 'BF16': for (let i = 0; i < n; i++) out.setUint16(at + 2 * i, f32ToBf16(d[i]), true); break;
    case 'I64': for (let i = 0; i < n; i++) out.setBigInt64(at + 8 * i, BigInt(d[i]), true); break;
    case 'I32': for (let i = 0; i < n; i++) out.setInt32(at + 4 * i, d[i], true); break;
    case 'I16': for (let i = 0; i < n; i++) out.setInt16(at + 2 * i, d[i], true); break;
    case 'I8': for (let i = 0; i < n; i++) out.setInt8(at + i, d[i]); break;
    case 'U8': case 'BOOL': for (let i = 0; i < n; i++) out.setUint8(at + i, d[i]); break;
  }
}

/**
 * A safetensors file of `tensors` in the given order, with `metadata` as `__metadata__`.
 * The header is padded with spaces to a multiple of 8 bytes (as the reference writer does), so
 * the data of an F32 file starts 8-byte aligned.
 */
export function writeSafetensors(tensors: readonly TensorToWrite[], metadata?: Record<string, string>): Uint8Array {
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let at = 0;
  const names = new Set<string>();
  for (const t of tensors) {
    const dtype = t.dtype ?? 'F32';
    if (t.name === '__metadata__' || names.has(t.name)) throw new SafetensorsError('writeSafetensors', t.name, 'the name is reserved or used twice.');
    names.add(t.name);
    const n = numel(t.shape);
    const raw = t.data instanceof Uint8Array && dtype !== 'U8' && dtype !== 'BOOL';
    const bytes = n * DTYPE_BYTES[dtype];
    if (raw ? t.data.length !== bytes : t.data.length !== n) {
      throw new SafetensorsError('writeSafetensors', t.name, `shape [${t.shape.join(', ')}] holds ${n} values but ${t.data.length} ${raw ? 'bytes' : 'values'} were given.`);
    }
    header[t.name] = { dtype, shape: [...t.shape], data_offsets: [at, at + bytes] };
    at += bytes;
  }
  let json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.length / 8) * 8;
  if (padded !== json.length) {
    const p = new Uint8Array(padded).fill(0x20);
    p.set(json);
    json = p;
  }
  const out = new Uint8Array(8 + json.length + at);
  const view = new DataView(out.buffer);
  view.setUint32(0, json.length, true);
  view.setUint32(4, 0, true);
  out.set(json, 8);
  let pos = 8 + json.length;
  for (const t of tensors) {
    const dtype = t.dtype ?? 'F32';
    if (t.data instanceof Uint8Array && dtype !== 'U8' && dtype !== 'BOOL') out.set(t.data, pos);
    else encodeValues(t, dtype, view, pos);
    pos += numel(t.shape) * DTYPE_BYTES[dtype];
  }
  return out;
}
