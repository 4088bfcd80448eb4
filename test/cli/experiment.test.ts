/**
 * `npm run dmae -- experiment` end to end at the smoke scale: every experiment's jobs really run
 * (child processes of this CLI and of the benchmarks, on Dawn), the pages, plots and summaries
 * are written from their results, a second run reuses every job, and failures name the job.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { EXPERIMENTS, JobRunner, commandOf, runExperiments, type ExperimentName } from '../../src/cli/experiment';
import { spread, verdict } from '../../src/cli/experiment-report';

describe('experiment statistics', () => {
  it('spread: mean, sample sd, min, max', () => {
    const s = spread([0.9, 0.8, 1.0]);
    expect(s.mean).toBeCloseTo(0.9, 12);
    expect(s.sd).toBeCloseTo(0.1, 12);
    expect([s.min, s.max, s.n]).toEqual([0.8, 1.0, 3]);
    expect(spread([0.5]).sd).toBe(0);
  });

  it('verdict over paired seeds: held (every seed), mixed (on average), did not hold', () => {
    expect(verdict([0.9, 0.8], [0.85, 0.7]).verdict).toBe('held');
    expect(verdict([0.9, 0.6], [0.85, 0.62]).verdict).toBe('mixed');
    expect(verdict([0.8, 0.6], [0.85, 0.62])).toMatchObject({ verdict: 'did not hold', wins: 0, pairs: 2 });
  });
});

describe('npm run dmae -- experiment (smoke scale)', () => {
  const work = mkdtempSync(join(tmpdir(), 'dmae-experiment-'));
  const out = join(work, 'results');
  const names = Object.keys(EXPERIMENTS) as ExperimentName[];

  it('runs all four experiments end to end and writes a page, a plot and a summary each', { timeout: 900_000 }, async () => {
    const lines: string[] = [];
    const { pages } = await runExperiments({ names, scale: 'smoke', seeds: [0, 1], work, out, say: (l) => lines.push(l) });
    expect(pages).toHaveLength(4);
    for (const n of names) {
      const md = readFileSync(join(out, `${n}.md`), 'utf8');
      expect(md).toContain(`# Experiment: ${n}`);
      expect(md).toContain('npm run ');
      expect(md).toMatch(/\| --- \|/); // a table
      expect(readFileSync(join(out, `${n}.svg`), 'utf8')).toMatch(/^<svg[\s\S]*<\/svg>$/);
    }
    const s1 = JSON.parse(readFileSync(join(out, 'dmae-vs-mae.json'), 'utf8'));
    for (const kind of ['mae', 'dmae']) {
      for (const m of ['knn', 'linprobe']) {
        expect(s1.accuracy[kind][m].n).toBe(2);
        for (const a of s1.accuracy[kind][m].values) expect(a).toBeGreaterThanOrEqual(0), expect(a).toBeLessThanOrEqual(1);
      }
    }
    const s2 = JSON.parse(readFileSync(join(out, 'dmae-vs-kd.json'), 'utf8'));
    for (const k of ['dmae', 'ft', 'kd']) expect(s2.accuracy[k].linprobe.n).toBe(2);
    expect(s2.kdHead.n).toBe(2);
    expect(s2.teacherFinetuned).toBeGreaterThanOrEqual(0);
    const s3 = JSON.parse(readFileSync(join(out, 'mask-ratio.json'), 'utf8'));
    expect(Object.keys(s3.accuracy)).toEqual(['0.75', '0.98']);
    const s4 = JSON.parse(readFileSync(join(out, 'cost.json'), 'utf8'));
    expect(s4.ratios['dmae_vs_mae_step_time_m0.75']).toBeGreaterThan(0);
    expect(readFileSync(join(out, 'README.md'), 'utf8')).toContain('[cost](cost.md)');
    // The student jobs really trained: their runs hold the weights and a metrics line per step.
    const metrics = readFileSync(join(work, 'dmae-m0.75-s1', 'metrics.jsonl'), 'utf8').trim().split('\n');
    expect(metrics.map((l) => JSON.parse(l)).filter((m) => m.loss !== undefined).map((m) => m.step)).toEqual([1, 2, 3]);
    expect(lines.filter((l) => /reused/.test(l))).toEqual([]);

    // Again: nothing runs, every job is reused from its record.
    const again: string[] = [];
    await runExperiments({ names: ['dmae-vs-mae'], scale: 'smoke', seeds: [0, 1], work, out, say: (l) => again.push(l) });
    const jobLines = again.filter((l) => /^\[\d+\/\d+\]/.test(l));
    expect(jobLines.length).toBe(1 + 2 * 2 * 3 + 2 + 2); // teacher + 2 seeds × 2 students × (run + 2 evaluations) + the teacher's and an untrained student's
    expect(s1.untrained.knn).toBeGreaterThanOrEqual(0);
    expect(s1.teacher.linprobe).toBeGreaterThanOrEqual(0);
    expect(jobLines.every((l) => l.includes('reused'))).toBe(true);

    // A finished run without its record is adopted, not trained again.
    rmSync(join(work, 'jobs', 'teacher.json'));
    const adopted: string[] = [];
    await runExperiments({ names: ['dmae-vs-mae'], scale: 'smoke', seeds: [0], work, out: join(work, 'results-2'), say: (l) => adopted.push(l) });
    expect(adopted.find((l) => l.includes(' teacher:'))).toMatch(/adopted/);
  });

  it('a failing job stops the experiment with its command and the end of its log', { timeout: 120_000 }, async () => {
    const runner = new JobRunner(join(work, 'failing'), () => {});
    const job = { id: 'bad', title: 'an impossible run', tool: 'dmae' as const, argv: ['train', '--steps', '-3', '--out', join(work, 'failing', 'bad')], result: join(work, 'failing', 'bad', 'config.json') };
    await expect(runner.run(job, '[1/1]')).rejects.toThrow(/job bad failed \(exit 1\)[\s\S]*npm run dmae -- train --steps -3[\s\S]*steps/);
    expect(existsSync(runner.logPath('bad'))).toBe(true);
    expect(commandOf(job)).toBe(`npm run dmae -- train --steps -3 --out ${join(work, 'failing', 'bad')}`);
  });
});
