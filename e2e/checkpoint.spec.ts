/**
 * Checkpoints in the browser (issue 6), in real Chromium on SwiftShader, with tiny runs:
 *
 * - a tiny MAE autosaves every 4 steps into IndexedDB; the page is reloaded mid-run; the studio
 *   offers to resume the run at its saved step s; resumed, it runs to the end and its losses for
 *   steps s+1..K equal, bit for bit, those of an uninterrupted run with the same seed (and its
 *   curve before s, kept in the checkpoint, is shown too);
 * - "Download checkpoint" gives one .safetensors file, which "Resume from file…" continues to the
 *   end; a corrupt file gets a clear message and starts nothing;
 * - with the origin's quota made tiny (DevTools protocol), the autosave's failure is shown in the
 *   page while training goes on.
 */
import { expect, test, type Page } from '@playwright/test';
import { readFileSync } from 'node:fs';
import { collectErrors } from './chromium';

interface Rec { step: number; loss: number }

type Studio = { __dmaeStudio: { train: { getState(): { run: { runId: string; status: string } | null; worker: { status: string } } }; metrics: { records(id: string): Rec[] } } };

/** The current run's per-step losses, from the page's metrics buffer. */
const records = (page: Page): Promise<Rec[]> =>
  page.evaluate(() => {
    const s = (window as unknown as Studio).__dmaeStudio;
    const run = s.train.getState().run;
    return run ? s.metrics.records(run.runId).map((r) => ({ step: r.step, loss: r.loss })) : [];
  });

async function ready(page: Page): Promise<void> {
  await expect(page.getByRole('heading', { name: 'DMAE Studio' })).toBeVisible();
  await expect(page.getByTestId('adapter-chip')).toBeVisible({ timeout: 60_000 });
  await expect.poll(() => page.evaluate(() => (window as unknown as Studio).__dmaeStudio.train.getState().worker.status), { timeout: 60_000 }).toBe('ready');
}

const K = 12;

test('autosave, reload mid-run, resume: the resumed losses equal an uninterrupted run\'s, bit for bit', async ({ page }) => {
  test.setTimeout(240_000);
  const errors = collectErrors(page);
  await page.setViewportSize({ width: 1440, height: 960 });
  await page.goto('/?debug=train#p=tiny');
  await ready(page);
  await page.getByTestId('cfg-totalSteps').fill(String(K));
  await page.getByTestId('autosave-every').fill('4');
  const status = page.getByTestId('train-status');

  // 1. The uninterrupted run.
  await page.getByTestId('start').click();
  await expect(status).toHaveText('done', { timeout: 120_000 });
  const full = await records(page);
  expect(full.map((r) => r.step)).toEqual(Array.from({ length: K }, (_, i) => i + 1));

  // 2. The same run, interrupted by a reload after its first autosave.
  await page.getByTestId('start').click();
  const saved = page.getByTestId('autosave-status');
  await expect.poll(async () => Number((await saved.getAttribute('data-step')) || 0), { timeout: 120_000 }).toBeGreaterThanOrEqual(4);
  const savedStep = Number(await saved.getAttribute('data-step'));
  expect(savedStep).toBeLessThan(K);
  await page.reload();
  await ready(page);

  // 3. The offer names the run and its step; resuming continues to the end.
  const offer = page.getByTestId('resume-offer-row');
  await expect(offer).toHaveCount(1);
  const s = Number(await offer.getAttribute('data-step'));
  expect(s, 'the offered step is an autosave of the run (the first one, or a later one before the reload)').toBeGreaterThanOrEqual(savedStep);
  expect(s).toBeLessThan(K);
  await expect(offer).toContainText(`stopped at step ${s} of ${K}`);
  await offer.getByTestId('resume-offer-resume').click();
  await expect(page.getByTestId('resume-offer')).toHaveCount(0);
  await expect(status).toHaveText('done', { timeout: 120_000 });
  // The resumed run's curve: steps 1..s from the checkpoint's history, s+1..K trained after the reload.
  const resumed = await records(page);
  expect(resumed.map((r) => r.step), 'one curve, every step once').toEqual(Array.from({ length: K }, (_, i) => i + 1));
  expect(resumed.slice(s).map((r) => r.loss), `losses of steps ${s + 1}..${K} (trained after the reload)`).toEqual(full.slice(s).map((r) => r.loss));
  expect(resumed.slice(0, s).map((r) => r.loss), `losses of steps 1..${s} (before the reload)`).toEqual(full.slice(0, s).map((r) => r.loss));
  const chart = page.getByTestId('loss-chart');
  await expect(chart).toHaveAttribute('data-last-step', String(K));
  await expect(chart).toHaveAttribute('data-contiguous', 'true');

  // Finished: nothing is offered after another reload.
  await page.reload();
  await ready(page);
  await expect(page.getByTestId('run')).toBeVisible();
  await expect(page.getByTestId('resume-offer')).toHaveCount(0);
  expect(errors).toEqual([]);
});

test('download a checkpoint and resume from the file; a corrupt file is refused with a clear message', async ({ page }) => {
  test.setTimeout(240_000);
  await page.setViewportSize({ width: 1440, height: 960 });
  await page.goto('/?debug=train#p=tiny');
  await ready(page);
  // Long enough that the stop lands mid-run: a tiny step takes milliseconds, and 8 steps could
  // finish before the stop reached the worker.
  const total = 60;
  await page.getByTestId('cfg-totalSteps').fill(String(total));
  await page.getByTestId('autosave-every').fill('0');
  const status = page.getByTestId('train-status');

  // A corrupt file: a message that says what is wrong, and no run.
  await page.getByTestId('resume-file-input').setInputFiles({ name: 'broken.safetensors', mimeType: 'application/octet-stream', buffer: Buffer.from('this is not a checkpoint at all') });
  const err = page.getByTestId('checkpoint-resume-error');
  await expect(err).toBeVisible();
  await expect(err).toContainText('broken.safetensors');
  await expect(err).toContainText('cannot be resumed from');
  await expect(status).toHaveCount(0);

  // Train a little, stop, download.
  await page.getByTestId('start').click();
  await expect.poll(async () => Number(await page.getByTestId('train-step').textContent()), { timeout: 120_000 }).toBeGreaterThanOrEqual(2);
  await page.getByTestId('stop').click();
  await expect(status).toHaveText('stopped', { timeout: 60_000 });
  const stoppedAt = Number(await page.getByTestId('train-step').textContent());
  const [download] = await Promise.all([page.waitForEvent('download'), page.getByTestId('download-checkpoint').click()]);
  expect(download.suggestedFilename()).toMatch(/\.safetensors$/);
  const bytes = readFileSync(await download.path());

  // Resume from the file: it continues from the stopped step to the end.
  await page.getByTestId('resume-file-input').setInputFiles({ name: 'run.safetensors', mimeType: 'application/octet-stream', buffer: bytes });
  await expect(status).toHaveText('done', { timeout: 120_000 });
  await expect(err).toHaveCount(0);
  await expect(page.getByTestId('run-result')).toContainText(`Done at step ${total}`);
  const recs = await records(page);
  expect(stoppedAt).toBeLessThan(total);
  expect(recs.map((r) => r.step), 'the file\'s curve, then the resumed steps').toEqual(Array.from({ length: total }, (_, i) => i + 1));
});

test('a full storage quota is reported in the page, not silent', async ({ page, baseURL }) => {
  test.setTimeout(120_000);
  await page.goto('/?debug=train#p=tiny');
  // Chromium's own quota for this origin, made tiny (DevTools protocol): IndexedDB refuses the checkpoint.
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Storage.overrideQuotaForOrigin', { origin: new URL(baseURL!).origin, quotaSize: 4096 });
  await ready(page);
  await page.getByTestId('cfg-totalSteps').fill('6');
  await page.getByTestId('autosave-every').fill('2');
  await page.getByTestId('start').click();
  const err = page.getByTestId('checkpoint-save-error');
  await expect(err).toBeVisible({ timeout: 120_000 });
  await expect(err).toContainText('storage quota is full');
  await expect(page.getByTestId('train-status')).toHaveText('done', { timeout: 120_000 }); // training goes on
  await expect(page.getByTestId('autosave-status')).toHaveAttribute('data-step', '');
});
