/**
 * Evaluation in the studio, in real Chromium with WebGPU on SwiftShader (a CPU emulation: the
 * model and the run are tiny). A tiny MAE trained from the UI with the live k-NN monitor on shows
 * the monitor's curve next to the losses (a bank of 200 digits: SwiftShader is slow); Evaluate
 * (k-NN on the small subset a software GPU starts with, 300 training / 100 validation digits)
 * shows a progress bar, then the accuracy, the per-class bars and a 10×10
 * confusion matrix with the digits on its axes; the run is not changed by it; after a reload the
 * result is still with the run in Runs and its pictures unfold there.
 */
import { expect, test, type Page } from '@playwright/test';
import { join } from 'node:path';
import { SCREENSHOTS, collectErrors } from './chromium';



type Studio = {
  train: { getState(): { worker: { status: string }; run: { runId: string; checkpoint?: { params: { buffer: ArrayBuffer } } } | null } };
  metrics: { records(id: string): { step: number }[] };
};
const studio = (page: Page) => page.evaluate(() => (window as unknown as { __dmaeStudio: Studio }).__dmaeStudio !== undefined);

test('a tiny MAE with the k-NN monitor; Evaluate (k-NN) shows the accuracy, per-class bars and a confusion matrix, kept with the run across a reload', async ({ page }) => {
  test.setTimeout(240_000);
  const errors = collectErrors(page);
  await page.setViewportSize({ width: 1440, height: 960 });
  // The tiny preset, 20 steps, the k-NN monitor every 10 steps on a bank of 200 (and 50 queries).
  await page.goto('/?debug=train#p=tiny&s=20&knn=10&kni=200');
  await expect(page.getByRole('heading', { name: 'DMAE Studio' })).toBeVisible();
  await expect(page.getByTestId('adapter-chip')).toBeVisible({ timeout: 60_000 });
  expect(await studio(page)).toBe(true);
  await expect.poll(() => page.evaluate(() => (window as unknown as { __dmaeStudio: Studio }).__dmaeStudio.train.getState().worker.status), { timeout: 60_000 }).toBe('ready');
  await expect(page.getByTestId('cfg-knnEvery')).toHaveValue('10');
  await expect(page.getByTestId('cfg-knnImages')).toHaveValue('200');
  await expect(page.getByTestId('evaluate')).toHaveAttribute('data-status', 'idle');

  await page.getByTestId('start').click();
  await expect(page.getByTestId('train-status')).toHaveText('done', { timeout: 150_000 });

  // The monitor's curve: points at 0, 10 and 20, accuracies in [0, 1].
  const knn = page.getByTestId('knn-chart');
  await expect(knn).toBeVisible();
  await expect(knn).toHaveAttribute('data-points', '3');
  await expect(knn).toHaveAttribute('data-last-step', '20');
  const monitored = Number(await knn.getAttribute('data-last-accuracy'));
  expect(monitored).toBeGreaterThan(0);
  expect(monitored).toBeLessThanOrEqual(1);
  await expect(page.getByTestId('knn-chart-plot').locator('canvas').first()).toBeVisible();
  await knn.screenshot({ path: join(SCREENSHOTS, 'studio-knn.png') });

  // Evaluate the ended run: k-NN on the small subset (SwiftShader's default).
  const panel = page.getByTestId('evaluate');
  const paramsBefore = await page.evaluate(() => Array.from(new Uint8Array((window as unknown as { __dmaeStudio: Studio }).__dmaeStudio.train.getState().run!.checkpoint!.params.buffer).slice(0, 4096)));
  await expect(panel.getByTestId('eval-method')).toHaveValue('knn');
  await expect(panel.getByTestId('eval-size')).toHaveValue('small');
  await panel.getByTestId('eval-run').click();
  await expect(panel).toHaveAttribute('data-status', 'running');
  await expect(panel).toHaveAttribute('data-status', 'done', { timeout: 120_000 });

  const result = panel.getByTestId('evaluation-result');
  await expect(result).toHaveAttribute('data-method', 'knn');
  await expect(result).toHaveAttribute('data-count', '100');
  await expect(result).toHaveAttribute('data-step', '20');
  const accuracy = Number(await result.getAttribute('data-accuracy'));
  // MNIST's 10 digits: chance is 10 % (100 queries: sd 3 %); k-NN on even a barely trained encoder's features is well above it.
  expect(accuracy, 'k-NN accuracy').toBeGreaterThan(0.2);
  await expect(panel.getByTestId('eval-accuracy')).toHaveText(`${(100 * accuracy).toFixed(1)} %`);

  const matrix = panel.getByTestId('confusion-matrix');
  await expect(matrix).toBeVisible();
  await expect(matrix).toHaveAttribute('data-classes', '10');
  await expect(matrix).toHaveAttribute('data-total', '100');
  await expect(matrix.getByTestId('confusion-cell')).toHaveCount(100);
  const counts = await matrix.getByTestId('confusion-cell').evaluateAll((cells) => cells.map((c) => [Number(c.getAttribute('data-row')), Number(c.getAttribute('data-col')), Number(c.getAttribute('data-count'))]));
  expect(counts.reduce((s, [, , n]) => s + n, 0)).toBe(100);
  expect(counts.filter(([r, c]) => r === c).reduce((s, [, , n]) => s + n, 0) / 100).toBeCloseTo(accuracy, 10);
  for (const digit of ['0', '5', '9']) await expect(matrix.locator('text', { hasText: new RegExp(`^${digit}$`) }).first()).toBeVisible();
  // The cells are painted: more than a handful of distinct colours (a heatmap, not a blank grid).
  const fills = await matrix.locator('rect').evaluateAll((rs) => new Set(rs.map((r) => r.getAttribute('fill'))).size);
  expect(fills).toBeGreaterThan(5);
  const box = await matrix.boundingBox();
  expect(box!.width).toBeGreaterThan(150);
  await expect(panel.getByTestId('eval-per-class').getByTestId('eval-class-bar')).toHaveCount(10);

  // The run is as it was (its kept weights), and its curve unchanged.
  const paramsAfter = await page.evaluate(() => Array.from(new Uint8Array((window as unknown as { __dmaeStudio: Studio }).__dmaeStudio.train.getState().run!.checkpoint!.params.buffer).slice(0, 4096)));
  expect(paramsAfter).toEqual(paramsBefore);
  await expect(page.getByTestId('train-status')).toHaveText('done');
  await panel.screenshot({ path: join(SCREENSHOTS, 'studio-evaluate.png') });

  // Kept with the run: after a reload, its badge in Runs unfolds the same pictures.
  const row = page.getByTestId('run-row').first();
  await expect(row.getByTestId('run-eval-badge')).toContainText(`k-NN ${(100 * accuracy).toFixed(1)} %`);
  await page.reload();
  await expect(row.getByTestId('run-eval-badge')).toContainText(`k-NN ${(100 * accuracy).toFixed(1)} %`, { timeout: 30_000 });
  await row.getByTestId('run-eval-badge').click();
  const stored = row.getByTestId('run-eval-pictures');
  await expect(stored.getByTestId('confusion-matrix')).toHaveAttribute('data-total', '100');
  await expect(stored.getByTestId('evaluation-result')).toHaveAttribute('data-accuracy', String(accuracy));
  // Its monitor curve comes back when it is overlaid.
  await row.getByTestId('run-compare').check();
  await expect(knn).toHaveAttribute('data-points', '3');
  expect(errors).toEqual([]);
});
