/**
 * Training in the browser's worker, in real Chromium with WebGPU (SwiftShader here, a CPU
 * emulation, so the model and the run are tiny): a run started from the page reports its steps,
 * pause holds the step and resume continues it, the loss falls, the reconstruction canvas is
 * drawn, stop ends the run — and the page's main thread never blocks for more than 50 ms
 * meanwhile (long tasks, recorded by PerformanceObserver). An impossible configuration is
 * refused with a clear message in the page.
 */
import { expect, test, type Page } from '@playwright/test';

function collectErrors(page: Page): string[] {
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(`console: ${m.text()}`);
  });
  return errors;
}

/** Records every long task (> 50 ms on the main thread) from the page's first script on. */
async function recordLongTasks(page: Page): Promise<void> {
  await page.addInitScript(() => {
    const w = window as unknown as { __longTasks: { start: number; duration: number; name: string }[] };
    w.__longTasks = [];
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) w.__longTasks.push({ start: e.startTime, duration: e.duration, name: e.name });
    }).observe({ type: 'longtask', buffered: true });
  });
}

const longTasksSince = (page: Page, t0: number) =>
  page.evaluate((since) => (window as unknown as { __longTasks: { start: number; duration: number; name: string }[] }).__longTasks.filter((t) => t.start >= since), t0);

const num = async (page: Page, id: string): Promise<number> => Number(await page.getByTestId(id).textContent());

test('a tiny MAE trains in the worker: steps arrive, pause holds, resume continues, the loss falls, stop; the page stays responsive', async ({ page }) => {
  test.setTimeout(240_000);
  const errors = collectErrors(page);
  await recordLongTasks(page);
  await page.goto('/');
  const panel = page.getByTestId('train');
  const start = panel.getByRole('button', { name: 'Start' });
  await expect(start).toBeEnabled({ timeout: 60_000 }); // the worker has its GPU
  await panel.getByLabel('Steps').fill('40');

  const t0 = await page.evaluate(() => performance.now());
  await start.click();
  const status = page.getByTestId('train-status');
  await expect(status).toHaveText('running');
  await expect.poll(() => num(page, 'train-step'), { timeout: 90_000 }).toBeGreaterThanOrEqual(3);
  await expect(page.getByTestId('train-progress')).toContainText('12 of 49 patches visible'); // the worker's resolved masking: int(49 · 0.25)

  // Pause: the step stops advancing.
  await panel.getByRole('button', { name: 'Pause' }).click();
  await expect(status).toHaveText('paused');
  const pausedAt = await num(page, 'train-step');
  await page.waitForTimeout(2000);
  expect(await num(page, 'train-step'), 'no step while paused').toBe(pausedAt);

  // Resume: it continues from there.
  await panel.getByRole('button', { name: 'Resume' }).click();
  await expect(status).toHaveText('running');
  await expect.poll(() => num(page, 'train-step'), { timeout: 90_000 }).toBeGreaterThan(pausedAt);

  // Let it learn a little, then stop before the end.
  await expect.poll(() => num(page, 'train-step'), { timeout: 150_000 }).toBeGreaterThanOrEqual(28);
  await panel.getByRole('button', { name: 'Stop' }).click();
  await expect(status).toHaveText('stopped', { timeout: 60_000 });
  const last = await num(page, 'train-step');
  expect(last).toBeGreaterThanOrEqual(28);
  expect(last).toBeLessThanOrEqual(40);

  const first = await num(page, 'train-first-loss'), final = await num(page, 'train-loss');
  expect(Number.isFinite(first) && Number.isFinite(final)).toBe(true);
  expect(final, `loss ${first} → ${final}`).toBeLessThan(first);

  // The last reconstruction is of the stopped step, and has a picture in it.
  const canvas = page.getByTestId('train-reconstruction');
  await expect(canvas).toHaveAttribute('data-step', String(last));
  const distinct = await canvas.evaluate((c: HTMLCanvasElement) => {
    const d = c.getContext('2d')!.getImageData(0, 0, c.width, c.height).data;
    const seen = new Set<number>();
    for (let i = 0; i < d.length; i += 4) seen.add(d[i]);
    return seen.size;
  });
  expect(distinct, 'distinct gray levels in the reconstruction').toBeGreaterThan(20);
  await page.screenshot({ path: test.info().outputPath('studio-train.png'), fullPage: true });

  // Responsiveness: no main-thread task over 50 ms from Start to the end.
  const long = await longTasksSince(page, t0);
  expect(long, `long tasks while training: ${JSON.stringify(long)}`).toEqual([]);
  expect(errors).toEqual([]);
});

test('an impossible configuration is refused with a clear message, and the page can start again', async ({ page }) => {
  const errors = collectErrors(page);
  await page.goto('/');
  const panel = page.getByTestId('train');
  const start = panel.getByRole('button', { name: 'Start' });
  await expect(start).toBeEnabled({ timeout: 60_000 });
  await panel.getByLabel('Patch size').fill('5');
  await start.click();
  const error = page.getByTestId('train-error');
  await expect(error).toBeVisible();
  await expect(error).toContainText('This configuration cannot be trained');
  await expect(error).toContainText('image size 28 is not a multiple of patch size 5');
  await expect(page.getByTestId('train-status')).toHaveText('error');
  await expect(start).toBeEnabled();
  expect(errors).toEqual([]);
});

test('a lost GPU device is reported with the run kept, and a new run can start', async ({ page }) => {
  test.setTimeout(180_000);
  const errors = collectErrors(page);
  await page.goto('/?debug=train');
  const panel = page.getByTestId('train');
  const start = panel.getByRole('button', { name: 'Start' });
  await expect(start).toBeEnabled({ timeout: 60_000 });
  await panel.getByLabel('Steps').fill('1000');
  await start.click();
  await expect.poll(() => num(page, 'train-step'), { timeout: 90_000 }).toBeGreaterThanOrEqual(7); // past the snapshot at step 5
  await page.evaluate(() => (window as unknown as { __dmaeTrain: { loseDevice(): void } }).__dmaeTrain.loseDevice());
  const error = page.getByTestId('train-error');
  await expect(error).toBeVisible({ timeout: 60_000 });
  await expect(error).toContainText('The GPU device was lost');
  await expect(error).toContainText(/kept as it was at step \d+/);
  const kept = Number(/step (\d+) \(the last snapshot\)/.exec((await error.textContent())!)![1]);
  expect(kept).toBeGreaterThanOrEqual(5);
  expect(kept % 5).toBe(0);
  await expect(page.getByTestId('train-status')).toHaveText('error');

  // The next run gets a new device and trains.
  await panel.getByLabel('Steps').fill('3');
  await expect(start).toBeEnabled();
  await start.click();
  await expect(page.getByTestId('train-status')).toHaveText('done', { timeout: 90_000 });
  expect(await num(page, 'train-step')).toBe(3);
  expect(errors.filter((e) => !/device.*lost|lost.*device|Device was destroyed|destroyed/i.test(e))).toEqual([]);
});
