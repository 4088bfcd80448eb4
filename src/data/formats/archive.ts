/**
 * Archives as hostile input: gzip, zip and tar, each read into a list of entries under one
 * shared budget of decompressed bytes and entry count (a zip bomb runs out of budget, it does
 * not run out of memory). Declared sizes are checked before inflating where the format has
 * them (zip's central directory, gzip's ISIZE, tar headers); inflating is streamed in small
 * input chunks so that a stream lying about its size is stopped within one chunk's worth of
 * output (deflate expands at most ~1032×, so ≤ 16.5 MiB past the limit).
 *
 * Inflation is fflate's (maintained, pure TS/JS, works in browsers, workers and Node); the
 * container formats are parsed here because we need the sizes before inflating.
 */
import { Inflate } from 'fflate';
import { DatasetError, formatBytes, type ImportLimits } from '../errors';

export interface ArchiveEntry {
  /** Path inside the archive, '/'-separated, prefixed by the archive's own path. */
  path: string;
  data: Uint8Array;
}

/** What is left of the limits during one import (shared by nested archives). */
export class Budget {
  bytesLeft: number;
  entriesLeft: number;
  constructor(readonly limits: ImportLimits) {
    this.bytesLeft = limits.maxUncompressedBytes;
    this.entriesLeft = limits.maxEntries;
  }
  takeEntries(file: string, n: number): void {
    if (n > this.entriesLeft) {
      throw new DatasetError(file, 'too-large', `holds ${n} files, more than the ${this.limits.maxEntries} an import may have.`, 'Split the dataset, or import the folder it came from.');
    }
    this.entriesLeft -= n;
  }
  /** Reserve bytes before reading a file or inflating a stream (`loose`: a file as given, not unpacked). */
  takeBytes(file: string, n: number, loose = false): void {
    if (n > this.bytesLeft) {
      if (loose) throw new DatasetError(file, 'too-large', `is ${formatBytes(n)}; with the files before it that is past the ${formatBytes(this.limits.maxUncompressedBytes)} an import may hold in memory.`, 'Import a smaller part of the dataset.');
      throw new DatasetError(file, 'too-large', `would unpack to ${formatBytes(n)}, past the ${formatBytes(this.limits.maxUncompressedBytes)} an import may unpack (a zip bomb, or a dataset too large for the browser).`);
    }
    this.bytesLeft -= n;
  }
  /** Give back bytes no longer held (a loose image whose body was dropped after its header was read). */
  refund(n: number): void {
    this.bytesLeft = Math.min(this.limits.maxUncompressedBytes, this.bytesLeft + n);
  }
}

const CRC_TABLE = (() => {
  const t = new Int32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c;
  }
  return t;
})();

export function crc32(data: Uint8Array): number {
  let c = -1;
  for (let i = 0; i < data.length; i++) c = CRC_TABLE[(c ^ data[i]) & 0xff] ^ (c >>> 8);
  return (c ^ -1) >>> 0;
}

const CHUNK = 16 * 1024;

/**
 * Inflate raw deflate `src`, producing at most `maxOut` bytes (else a too-large error) —
 * `exact` demands exactly that many (zip entries declare it).
 */
function inflateBounded(src: Uint8Array, maxOut: number, file: string, exact: boolean): Uint8Array {
  const parts: Uint8Array[] = [];
  let total = 0;
  let ended = false;
  const inflater = new Inflate((chunk, final) => {
    total += chunk.length;
    if (total > maxOut) {
      throw new DatasetError(file, exact ? 'corrupt' : 'too-large', exact ? `inflates to more than the ${maxOut} bytes its header declares.` : `inflates past ${formatBytes(maxOut)}, the most this import may still unpack (a zip bomb, or a dataset too large).`);
    }
    if (chunk.length) parts.push(chunk);
    if (final) ended = true;
  });
  try {
    for (let off = 0; off < src.length; off += CHUNK) {
      const end = Math.min(src.length, off + CHUNK);
      inflater.push(src.subarray(off, end), end === src.length);
    }
    if (src.length === 0) inflater.push(new Uint8Array(0), true);
  } catch (e) {
    if (e instanceof DatasetError) throw e;
    throw new DatasetError(file, 'corrupt', `has a damaged compressed stream (${e instanceof Error ? e.message : String(e)}).`, 'Download or copy the file again.');
  }
  if (!ended) throw new DatasetError(file, 'truncated', 'ends in the middle of its compressed data.', 'The download may be incomplete.');
  if (exact && total !== maxOut) throw new DatasetError(file, 'corrupt', `inflates to ${total} bytes, not the ${maxOut} its header declares.`);
  if (parts.length === 1) return parts[0];
  const out = new Uint8Array(total);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

export function isGzip(data: Uint8Array): boolean {
  return data.length >= 2 && data[0] === 0x1f && data[1] === 0x8b;
}

/** Gunzip one member (RFC 1952), checking the header, the CRC and the ISIZE trailer. */
export function gunzip(data: Uint8Array, file: string, budget: Budget): Uint8Array {
  if (!isGzip(data)) throw new DatasetError(file, 'bad-magic', 'is not gzip data (it does not start with 1f 8b).');
  if (data.length < 18) throw new DatasetError(file, 'truncated', `is only ${data.length} bytes, shorter than any gzip file.`);
  if (data[2] !== 8) throw new DatasetError(file, 'unsupported', `uses gzip compression method ${data[2]}; only deflate (8) exists in practice.`);
  const flags = data[3];
  if (flags & 0xe0) throw new DatasetError(file, 'corrupt', 'has reserved gzip header flags set.');
  let p = 10;
  if (flags & 4) {
    if (p + 2 > data.length) throw new DatasetError(file, 'truncated', 'ends inside its gzip header.');
    p += 2 + (data[p] | (data[p + 1] << 8));
  }
  for (const bit of [8, 16]) {
    if (flags & bit) {
      while (p < data.length && data[p] !== 0) p++;
      p++;
    }
  }
  if (flags & 2) p += 2;
  if (p + 8 > data.length) throw new DatasetError(file, 'truncated', 'ends inside its gzip header.');
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const crc = dv.getUint32(data.length - 8, true);
  const isize = dv.getUint32(data.length - 4, true);
  // ISIZE is the length mod 2^32; with limits below 4 GiB a larger stream reads as smaller, so
  // it is only a first check — inflateBounded enforces the real budget.
  // Deflate expands at most 1032:1; a trailer claiming more is garbage (a cut-short or damaged file).
  if (isize > (data.length - p - 8) * 1032 + 1024) {
    throw new DatasetError(file, 'truncated', `is cut short or damaged: its gzip trailer claims ${isize} bytes, more than its ${data.length - p - 8} compressed bytes can hold.`, 'The download may be incomplete.');
  }
  budget.takeBytes(file, isize);
  const out = inflateBounded(data.subarray(p, data.length - 8), isize, file, true);
  if (crc32(out) !== crc) throw new DatasetError(file, 'corrupt', 'fails its gzip checksum (CRC-32).', 'The file is damaged; download or copy it again.');
  return out;
}

function decodeName(bytes: Uint8Array): string {
  return new TextDecoder('utf-8', { fatal: false }).decode(bytes);
}

/** Normalise an archive member path: '/'-separated, no leading '/', no '.' or '..' parts. */
export function cleanPath(p: string): string {
  const parts: string[] = [];
  for (const part of p.replace(/\\/g, '/').split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') parts.pop();
    else parts.push(part);
  }
  return parts.join('/');
}

export function isZip(data: Uint8Array): boolean {
  return data.length >= 4 && data[0] === 0x50 && data[1] === 0x4b && (data[2] === 3 || data[2] === 5) && (data[3] === 4 || data[3] === 6);
}

/**
 * Read a zip file: the end-of-central-directory record, the central directory (every entry's
 * sizes checked against the budget before anything is inflated), then each stored or deflated
 * entry, inflated with a bound of its declared size and checked against its CRC-32.
 */
export function unzip(data: Uint8Array, file: string, budget: Budget): ArchiveEntry[] {
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const len = data.length;
  if (len < 22) throw new DatasetError(file, 'truncated', `is only ${len} bytes, shorter than any zip file.`);
  let eocd = -1;
  for (let i = len - 22; i >= Math.max(0, len - 22 - 0xffff); i--) {
    if (dv.getUint32(i, true) === 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) {
    if (isZip(data)) throw new DatasetError(file, 'truncated', 'has no zip directory at its end: the file is cut short.', 'The download or copy may be incomplete.');
    throw new DatasetError(file, 'bad-magic', 'is not a zip file (no end-of-central-directory record).');
  }
  const disk = dv.getUint16(eocd + 4, true);
  const cdDisk = dv.getUint16(eocd + 6, true);
  const count = dv.getUint16(eocd + 10, true);
  const cdSize = dv.getUint32(eocd + 12, true);
  const cdOffset = dv.getUint32(eocd + 16, true);
  if (disk !== 0 || cdDisk !== 0 || dv.getUint16(eocd + 8, true) !== count) throw new DatasetError(file, 'unsupported', 'is a multi-part (spanned) zip archive.', 'Join the parts into one zip first.');
  if (count === 0xffff || cdOffset === 0xffffffff || cdSize === 0xffffffff) throw new DatasetError(file, 'unsupported', 'is a ZIP64 archive (over 4 GiB or 65,535 files), more than the studio imports.', 'Import a smaller part of it.');
  if (cdOffset + cdSize > eocd) throw new DatasetError(file, 'truncated', 'has a zip directory that points past the data: the file is cut short or damaged.');
  budget.takeEntries(file, count);

  interface Central { name: string; method: number; flags: number; crc: number; csize: number; usize: number; local: number }
  const central: Central[] = [];
  let declared = 0;
  let p = cdOffset;
  for (let i = 0; i < count; i++) {
    if (p + 46 > cdOffset + cdSize || dv.getUint32(p, true) !== 0x02014b50) throw new DatasetError(file, 'corrupt', `has a damaged zip directory (entry ${i + 1} of ${count}).`);
    const nameLen = dv.getUint16(p + 28, true);
    const extraLen = dv.getUint16(p + 30, true);
    const commentLen = dv.getUint16(p + 32, true);
    if (p + 46 + nameLen > len) throw new DatasetError(file, 'truncated', 'ends inside its zip directory.');
    const entry: Central = {
      flags: dv.getUint16(p + 8, true),
      method: dv.getUint16(p + 10, true),
      crc: dv.getUint32(p + 16, true),
      csize: dv.getUint32(p + 20, true),
      usize: dv.getUint32(p + 24, true),
      local: dv.getUint32(p + 42, true),
      name: decodeName(data.subarray(p + 46, p + 46 + nameLen)),
    };
    p += 46 + nameLen + extraLen + commentLen;
    if (entry.name.endsWith('/')) continue; // a directory
    if (entry.csize === 0xffffffff || entry.usize === 0xffffffff || entry.local === 0xffffffff) throw new DatasetError(`${file}/${entry.name}`, 'unsupported', 'is a ZIP64 entry (over 4 GiB).');
    declared += entry.usize;
    central.push(entry);
  }
  // Everything is declared up front: a bomb is refused here, before one byte is inflated.
  budget.takeBytes(file, declared);

  const entries: ArchiveEntry[] = [];
  for (const e of central) {
    const name = `${file}/${cleanPath(e.name)}`;
    if (e.flags & 1) throw new DatasetError(name, 'unsupported', 'is encrypted (password-protected zip).', 'Unzip it yourself and import the folder.');
    if (e.local + 30 > len || dv.getUint32(e.local, true) !== 0x04034b50) throw new DatasetError(name, 'corrupt', 'has no valid local header where the zip directory says it is.');
    const start = e.local + 30 + dv.getUint16(e.local + 26, true) + dv.getUint16(e.local + 28, true);
    if (start + e.csize > len) throw new DatasetError(name, 'truncated', 'is cut short: the zip directory promises more compressed data than the file holds.');
    const raw = data.subarray(start, start + e.csize);
    let out: Uint8Array;
    if (e.method === 0) {
      if (e.csize !== e.usize) throw new DatasetError(name, 'corrupt', 'is stored uncompressed but its two declared sizes differ.');
      out = raw;
    } else if (e.method === 8) {
      out = inflateBounded(raw, e.usize, name, true);
    } else {
      throw new DatasetError(name, 'unsupported', `uses zip compression method ${e.method}; only stored (0) and deflate (8) are read.`, 'Re-create the zip with ordinary (deflate) compression.');
    }
    if (crc32(out) !== e.crc) throw new DatasetError(name, 'corrupt', 'fails its zip checksum (CRC-32): the archive is damaged.');
    entries.push({ path: name, data: out });
  }
  return entries;
}

function readOctal(h: Uint8Array, off: number, n: number): number {
  if (h[off] & 0x80) {
    // GNU base-256: big-endian binary in the rest of the field.
    let v = 0;
    for (let i = 1; i < n; i++) v = v * 256 + h[off + i];
    return (h[off] & 0x40) ? -1 : v;
  }
  let v = 0;
  let seen = false;
  for (let i = 0; i < n; i++) {
    const c = h[off + i];
    if (c === 0 || c === 0x20) {
      if (seen) break;
      continue;
    }
    if (c < 0x30 || c > 0x37) return -1;
    v = v * 8 + (c - 0x30);
    seen = true;
  }
  return v;
}

function cString(h: Uint8Array, off: number, n: number): string {
  let end = off;
  while (end < off + n && h[end] !== 0) end++;
  return decodeName(h.subarray(off, end));
}

export function looksLikeTar(data: Uint8Array): boolean {
  if (data.length < 512) return false;
  const magic = String.fromCharCode(...data.subarray(257, 262));
  return magic === 'ustar' || tarChecksumOk(data.subarray(0, 512));
}

function tarChecksumOk(h: Uint8Array): boolean {
  const stored = readOctal(h, 148, 8);
  if (stored < 0) return false;
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 0x20 : h[i];
  return sum === stored;
}

/** Read a (ustar, GNU or pax) tar: regular files only; long names from GNU 'L' and pax 'path'. */
export function untar(data: Uint8Array, file: string, budget: Budget): ArchiveEntry[] {
  const entries: ArchiveEntry[] = [];
  let p = 0;
  let longName: string | null = null;
  while (p + 512 <= data.length) {
    const h = data.subarray(p, p + 512);
    if (h.every((b) => b === 0)) break; // end-of-archive blocks
    if (!tarChecksumOk(h)) {
      throw new DatasetError(file, p === 0 ? 'bad-magic' : 'corrupt', p === 0 ? 'is not a tar archive (its first header fails the tar checksum).' : `has a damaged tar header at byte ${p}.`);
    }
    const size = readOctal(h, 124, 12);
    if (size < 0) throw new DatasetError(file, 'corrupt', `has an unreadable size in the tar header at byte ${p}.`);
    const type = String.fromCharCode(h[156]);
    const start = p + 512;
    if (start + size > data.length) throw new DatasetError(file, 'truncated', `is cut short: a tar entry at byte ${p} promises ${size} bytes but only ${data.length - start} remain.`, 'The download may be incomplete.');
    const body = data.subarray(start, start + size);
    p = start + Math.ceil(size / 512) * 512;
    if (type === 'L') {
      longName = cString(body, 0, body.length);
      continue;
    }
    if (type === 'x') {
      const m = /(?:^|\n)\d+ path=([^\n]*)\n/.exec(decodeName(body));
      if (m) longName = m[1];
      continue;
    }
    if (type !== '0' && type !== '\0' && type !== '7') {
      longName = null;
      continue; // directories, links, devices, pax globals
    }
    let name = longName ?? cString(h, 0, 100);
    if (longName === null && String.fromCharCode(...h.subarray(257, 262)) === 'ustar') {
      const prefix = cString(h, 345, 155);
      if (prefix) name = `${prefix}/${name}`;
    }
    longName = null;
    budget.takeEntries(file, 1);
    entries.push({ path: `${file}/${cleanPath(name)}`, data: body });
  }
  return entries;
}
