/**
 * The device kit's bundle (scripts/device-kit.sh): the benchmarks bundled by esbuild must run
 * from two folders below the repository root, with no tsx and no node_modules but `webgpu`,
 * as they will on a borrowed GPU machine. Here: `gpu --dry` plans on this machine's adapter.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const DIR = '.cache/device-kit-test';

describe('scripts/device-kit.sh --bundle-only', () => {
  afterAll(() => rmSync(`${ROOT}${DIR}`, { recursive: true, force: true }));

  it('bundles bench/run.ts, and the bundle plans `gpu --dry` on this adapter', () => {
    execFileSync('bash', ['scripts/device-kit.sh', '--bundle-only', DIR], { cwd: ROOT, stdio: 'pipe' });
    expect(existsSync(`${ROOT}${DIR}/run.mjs`)).toBe(true);
    const out = execFileSync(process.execPath, [`${DIR}/run.mjs`, 'gpu', '--dry'], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    expect(out).toMatch(/^adapter: /m);
    expect(out).toMatch(/\(a\) tuner table: \d+ distinct products/);
    expect(out).toContain('dry run: nothing timed, nothing written');
  });

  it('refuses a folder its import.meta.url paths would not resolve from', () => {
    expect(() => execFileSync('bash', ['scripts/device-kit.sh', '--bundle-only', '.cache'], { cwd: ROOT, stdio: 'pipe' })).toThrow(/two folders below the repository root/);
  });
});
