/**
 * Where Node keeps the matmul tuner's choices (gpu/autotune.ts): one JSON file,
 *
 *   $DMAE_TUNE_CACHE                       when set ('none': keep nothing, memory only)
 *   $XDG_CACHE_HOME/dmae-studio/matmul-tune.json, else ~/.cache/dmae-studio/matmul-tune.json
 *
 * Under vitest without DMAE_TUNE_CACHE nothing is kept: tests never read or write the user's
 * cache. Writes go to a temporary file renamed into place, so a reader never sees half a file.
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import type { TuneStore } from './autotune';

/** The cache file this process uses, or null (memory only). */
export function tuneCachePath(): string | null {
  const env = process.env;
  const set = env.DMAE_TUNE_CACHE?.trim();
  if (set) return set.toLowerCase() === 'none' ? null : set;
  if (env.VITEST) return null;
  return join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'dmae-studio', 'matmul-tune.json');
}

/** The file store; the path is looked up at every load and save, so the environment may change. */
export const fileTuneStore: TuneStore = {
  get where() {
    return tuneCachePath() ?? 'memory only';
  },
  async load() {
    const path = tuneCachePath();
    if (!path) return null;
    try {
      return readFileSync(path, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw e;
    }
  },
  async save(text) {
    const path = tuneCachePath();
    if (!path) return;
    mkdirSync(dirname(path), { recursive: true });
    const tmp = `${path}.${process.pid}.tmp`;
    writeFileSync(tmp, text);
    renameSync(tmp, path);
  },
};
