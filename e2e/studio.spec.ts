/** The studio page in real Chromium with WebGPU (SwiftShader here): adapter shown, kernels correct. */
import { expect, test } from '@playwright/test';
import { collectErrors } from './chromium';

test('shows the WebGPU adapter and no error', async ({ page }) => {
  const errors = collectErrors(page);
  await page.goto('/');
  await expect(page.getByRole('heading', { name: 'DMAE Studio' })).toBeVisible();
  const adapter = page.getByTestId('adapter');
  await expect(adapter).toBeVisible();
  await expect(page.getByTestId('adapter-description')).not.toBeEmpty();
  // Headless Chromium on a machine without a GPU runs WebGPU on SwiftShader; elsewhere any adapter will do.
  if (!process.env.E2E_ANY_ADAPTER) await expect(page.getByTestId('adapter-kind')).toHaveText(/SwiftShader/);
  await expect(adapter).toContainText('Invocations per workgroup');
  await expect(page.getByTestId('no-webgpu')).toHaveCount(0);
  await expect(page.getByTestId('gpu-error')).toHaveCount(0);
  await expect(page.getByRole('button', { name: 'Run kernel self-test' })).toBeEnabled();
  expect(errors).toEqual([]);
});

test('kernel self-test: GPU matmul matches float64 in the browser', async ({ page }) => {
  const errors = collectErrors(page);
  await page.goto('/');
  const run = page.getByRole('button', { name: 'Run kernel self-test' });
  await expect(run).toBeEnabled();
  await run.click();
  const verdict = page.getByTestId('self-test-verdict');
  await expect(verdict).toBeVisible({ timeout: 60_000 });
  // The verdict appears once the run is over: read it once rather than wait for it to change.
  expect(await verdict.textContent()).toMatch(/^Passed/);
  // The page's own verdict is per element (atol·√K + rtol·|ref|); check the headline number too.
  const maxError = Number(await page.getByTestId('self-test-max-error').textContent());
  expect(maxError).toBeGreaterThanOrEqual(0);
  expect(maxError).toBeLessThan(1e-4);
  await expect(page.getByTestId('self-test').locator('tbody tr')).toHaveCount(3);
  await page.screenshot({ path: test.info().outputPath('studio-adapter.png'), fullPage: true });
  expect(errors).toEqual([]);
});
