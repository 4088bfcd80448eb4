/**
 * The evaluation's pictures apart from the browser: the confusion heatmap's geometry (K² cells,
 * rows coloured by their own share, counts and hover titles, names on both axes), the per-class
 * bars, the k-NN chart's aligned columns, and EvaluationView / EvaluatePanel rendered to HTML in
 * Node (react-dom/server). Drawing in a real browser: e2e/evaluate.spec.ts.
 */
import { createElement } from 'react';
import { renderToStaticMarkup } from 'react-dom/server';
import { describe, expect, it } from 'vitest';
import type { EvaluationResultSpec } from '../../src/protocol/train';
import { EvaluatePanel, evaluationRequest } from '../../src/ui/studio/EvaluatePanel';
import { knnChartData } from '../../src/ui/watch/chart-data';
import { confusionLayout, perClassBars, shortName } from '../../src/ui/watch/eval-pictures';
import { EvaluationView } from '../../src/ui/watch/EvaluationView';
import { colormap } from '../../src/ui/watch/heatmap';

const names = ['zero', 'one', 'a-very-long-class-name'];
const confusion = [[8, 2, 0], [1, 9, 0], [0, 0, 0]];
const result: EvaluationResultSpec = {
  method: 'knn', step: 60, accuracy: 17 / 20, count: 20, classNames: names, confusion,
  perClass: [{ index: 0, name: 'zero', count: 10, accuracy: 0.8 }, { index: 1, name: 'one', count: 10, accuracy: 0.9 }, { index: 2, name: names[2], count: 0, accuracy: null }],
  options: { k: 20 }, data: { name: 'MNIST', train: 1000, val: 20, C: 1, H: 28, W: 28 }, seconds: 1.5,
};

describe('evaluation pictures', () => {
  it('confusion heatmap: K² cells, each row coloured by its own share, counts and titles', () => {
    const g = confusionLayout(confusion, names);
    expect(g.K).toBe(3);
    expect(g.cells).toHaveLength(9);
    expect(g.total).toBe(20);
    const c01 = g.cells.find((c) => c.row === 0 && c.col === 1)!;
    expect(c01).toMatchObject({ count: 2, share: 0.2 });
    expect(c01.title).toBe('true zero, predicted one: 2 images (20.0 % of zero)');
    expect(c01.fill).toBe(`rgb(${colormap(0.2).join(',')})`);
    expect(g.cells.find((c) => c.row === 1 && c.col === 1)!.share).toBe(0.9);
    expect(g.cells.find((c) => c.row === 2 && c.col === 2)).toMatchObject({ share: 0, title: 'true a-very-long-class-name, predicted a-very-long-class-name: 0 images' });
    expect(g.showCounts).toBe(true);
    expect(g.rotateTop, 'long names are turned on the top axis').toBe(true);
    expect(g.width).toBe(g.left + 3 * g.cell + 2);
    // Many classes: small cells, no counts written (hover titles keep them).
    const big = confusionLayout(Array.from({ length: 100 }, (_, i) => Array.from({ length: 100 }, (_, j) => (i === j ? 120 : 1))), Array.from({ length: 100 }, (_, i) => `c${i}`));
    expect(big.cell).toBe(6);
    expect(big.showCounts).toBe(false);
    expect(shortName('a-very-long-class-name')).toBe('a-very-long-c…');
  });

  it('per-class bars: lengths by accuracy, a class without images says so', () => {
    const b = perClassBars(result.perClass, 200);
    expect(b.bars.map((x) => x.length)).toEqual([160, 180, 0]);
    expect(b.bars.map((x) => x.label)).toEqual(['80.0 % of 10', '90.0 % of 10', 'no images']);
  });

  it('the k-NN chart: runs aligned on the union of their steps', () => {
    const p = (step: number, accuracy: number) => ({ step, accuracy, bank: 1000, queries: 250, ms: 10 });
    expect(knnChartData([{ runId: 'a', points: [p(0, 0.1), p(10, 0.5)] }, { runId: 'b', points: [p(5, 0.3), p(10, 0.6)] }]))
      .toEqual([[0, 5, 10], [0.1, null, 0.5], [null, 0.3, 0.6]]);
  });

  it('EvaluationView as HTML: the accuracy, the bars, the matrix with names and counts', () => {
    const html = renderToStaticMarkup(createElement(EvaluationView, { result }));
    expect(html).toContain('data-testid="eval-accuracy">85.0 %<');
    expect(html).toContain('k-NN accuracy on 20 validation images of MNIST');
    expect(html).toContain('data-classes="3" data-total="20"');
    expect(html.match(/data-testid="confusion-cell"/g)).toHaveLength(9);
    expect(html).toContain('data-row="1" data-col="1" data-count="9"');
    expect(html).toContain('>zero<');
    expect(html).toContain('weakest class: zero (80.0 %)');
    expect(html.match(/data-testid="eval-class-bar"/g)).toHaveLength(3);
  });

  it('EvaluatePanel without a run explains itself; requests size the work for a page', () => {
    expect(renderToStaticMarkup(createElement(EvaluatePanel))).toContain('data-status="idle"');
    expect(evaluationRequest('knn', 'quick')).toEqual({ method: 'knn', seed: 0, maxTrain: 1000, maxVal: 250 });
    expect(evaluationRequest('linprobe', 'all')).toEqual({ method: 'linprobe', seed: 0, steps: 300 });
    expect(evaluationRequest('knn', 'small')).toEqual({ method: 'knn', seed: 0, maxTrain: 300, maxVal: 100 });
    expect(evaluationRequest('finetune', 'quick')).toMatchObject({ steps: 100, batch: 32, maxTrain: 1000 });
  });
});

describe('the k-NN monitor in the form', () => {
  it('off by default; on: every N steps, the bank and a quarter as many queries; in the URL', async () => {
    const { DEFAULT_CONFIG, decodeConfig, encodeConfig, knnOptionsOf, validateConfig } = await import('../../src/ui/studio/config');
    expect(DEFAULT_CONFIG.knnEvery).toBe(0);
    expect(knnOptionsOf(DEFAULT_CONFIG)).toEqual({});
    const on = { ...DEFAULT_CONFIG, knnEvery: 10, knnImages: 200 };
    expect(knnOptionsOf(on)).toEqual({ knnEvery: 10, knnBank: 200, knnQueries: 50 });
    expect(encodeConfig(on)).toBe('p=tiny&knn=10&kni=200');
    expect(decodeConfig('p=tiny&knn=10&kni=200')).toEqual(on);
    expect(validateConfig({ ...on, knnEvery: 2.5 }).knnEvery).toHaveLength(1);
    expect(validateConfig({ ...on, knnImages: 5 }).knnImages).toHaveLength(1);
    // A form kept by an older studio (no knnEvery) is off, not invalid.
    const { knnEvery: _k, ...old } = on;
    expect(knnOptionsOf(old as typeof on)).toEqual({});
    expect(validateConfig(old as typeof on).knnEvery).toBeUndefined();
  });
});
