/**
 * bench/run.ts's command line: a numeric option that is not what it counts or measures (a typo,
 * 0 repetitions, a negative time, a mask ratio of 1), or an option it does not know, stops the
 * run before anything starts, with exit status 2 and one line that names the option and what it
 * takes — not a stack trace, and not a run that divides by zero or silently uses NaN.
 */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';

const ROOT = new URL('../../', import.meta.url).pathname;

function bench(...args: string[]): { status: number | null; stderr: string; stdout: string } {
  const r = spawnSync(`${ROOT}node_modules/.bin/tsx`, ['bench/run.ts', ...args], { cwd: ROOT, encoding: 'utf8' });
  return { status: r.status, stderr: r.stderr.trim(), stdout: r.stdout.trim() };
}

describe('bench/run.ts options', () => {
  it.each([
    [['gpu', '--reps', '0'], '--reps 0: give a whole number ≥ 1'],
    [['gpu', '--budget-s=-5'], '--budget-s -5: give a number > 0'],
    [['kernels', '--warmup', '1.5'], '--warmup 1.5: give a whole number ≥ 0 (0: none)'],
    [['train', '--ratios', '0.75,0.9x'], '--ratios 0.9x: give a mask ratio in [0, 1)'],
    [['peer', '--mask-ratio', '1'], '--mask-ratio 1: give a mask ratio in [0, 1)'],
    [['peer', '--browser', '--matmul-calls', 'eight'], '--matmul-calls eight: give a whole number ≥ 1'],
    [['import', '--images', ''], "--images '': give a whole number ≥ 1"],
    [['gpu', '--bogus'], "Unknown option '--bogus'"],
    [['train', '--student', '{embedDim: 64}', '--teacher', '{}'], '--student: not JSON'],
    [['train', '--student', '{"embedDim": 64}', '--teacher', '{}'], '--student: Invalid model configuration: imgSize must be a positive integer'],
  ])('%j → exit 2, one line', (args, message) => {
    const r = bench(...args);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain(message);
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
    expect(r.stdout).toBe(''); // nothing started
  }, 30_000);

  it('good options still run (gpu --dry plans and writes nothing)', () => {
    const r = bench('gpu', '--reps', '2', '--budget-s', '60', '--dry');
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('dry run: nothing timed, nothing written');
  }, 120_000);
});
