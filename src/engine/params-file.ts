/**
 * A simple parameters file (the real checkpoint and safetensors formats are another issue):
 *   params.bin   every tensor of the table as little-endian float32, in table order, no padding
 *   params.json  { format, version, dtype, mode, config, teacher?, distill?, step, tensors: [{ name,
 *                shape, offset (bytes into params.bin), length (elements) }] }
 * Names and shapes are the timm/MAE ones (PyTorch Linear weights (out, in)). Pure: no file system,
 * so the browser can offer the same files for download.
 */
import type { ArenaLayout } from '../gpu/buffers';
import type { DistillConfig, MaeConfig } from './config';
import type { ParamMap } from './init';

export const PARAMS_FORMAT = 'dmae-studio-params';

export interface ParamsMeta {
  format: typeof PARAMS_FORMAT;
  version: 1;
  dtype: 'float32';
  mode: 'mae' | 'dmae';
  /** The model these parameters belong to (for DMAE: the student). */
  config: MaeConfig;
  teacher?: MaeConfig;
  distill?: DistillConfig;
  /** Optimiser steps done. */
  step: number;
  tensors: { name: string; shape: number[]; offset: number; length: number }[];
}

export function encodeParams(layout: ArenaLayout, params: ParamMap, meta: Omit<ParamsMeta, 'format' | 'version' | 'dtype' | 'tensors'>): { json: ParamsMeta; bin: Uint8Array } {
  const total = layout.entries.reduce((s, e) => s + e.length, 0);
  const flat = new Float32Array(total);
  const tensors: ParamsMeta['tensors'] = [];
  let at = 0;
  for (const e of layout.entries) {
    const v = params.get(e.name);
    if (!v || v.length !== e.length) throw new Error(`encodeParams: "${e.name}" has ${v?.length ?? 'no'} values, the table says ${e.length}.`);
    flat.set(v, at);
    tensors.push({ name: e.name, shape: [...e.shape], offset: at * 4, length: e.length });
    at += e.length;
  }
  return { json: { format: PARAMS_FORMAT, version: 1, dtype: 'float32', ...meta, tensors }, bin: new Uint8Array(flat.buffer) };
}

export function decodeParams(json: unknown, bin: Uint8Array, what = 'params.json'): { meta: ParamsMeta; params: ParamMap } {
  const meta = json as ParamsMeta;
  if (!meta || meta.format !== PARAMS_FORMAT || meta.version !== 1 || meta.dtype !== 'float32' || !Array.isArray(meta.tensors)) {
    throw new Error(`${what} is not a ${PARAMS_FORMAT} v1 float32 file.`);
  }
  const params: ParamMap = new Map();
  // Copy to an aligned buffer: a file read may start at any byte offset.
  const bytes = new Uint8Array(bin.byteLength);
  bytes.set(bin);
  const all = new Float32Array(bytes.buffer, 0, Math.floor(bytes.byteLength / 4));
  for (const t of meta.tensors) {
    const start = t.offset / 4;
    if (!Number.isInteger(start) || start + t.length > all.length) throw new Error(`${what}: tensor "${t.name}" lies outside params.bin (${bin.byteLength} bytes).`);
    params.set(t.name, Float64Array.from(all.subarray(start, start + t.length)));
  }
  return { meta, params };
}
