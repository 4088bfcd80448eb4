/** Reads every `shaders/**\/*.wgsl` into a map keyed by path without extension ("common/reduce"). */
import { readFileSync, readdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ShaderSources } from './kernels';

export const SHADER_DIR = fileURLToPath(new URL('../../shaders/', import.meta.url));

export function loadShaderSourcesFromDisk(dir = SHADER_DIR): ShaderSources {
  const sources: ShaderSources = {};
  const walk = (d: string): void => {
    for (const entry of readdirSync(d, { withFileTypes: true })) {
      const path = join(d, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.name.endsWith('.wgsl')) sources[relative(dir, path).replace(/\.wgsl$/, '')] = readFileSync(path, 'utf8');
    }
  };
  walk(dir);
  return sources;
}
