/** The studio page in Chromium launched WITHOUT --enable-unsafe-webgpu: a plain, useful message. */
import { expect, test } from '@playwright/test';
import { CHROMIUM, QUIET_FLAGS } from './chromium';

test.use({ launchOptions: { executablePath: CHROMIUM, args: QUIET_FLAGS } });

test('without WebGPU the page says why, where WebGPU works, and what still works', async ({ page }) => {
  const pageErrors: string[] = [];
  page.on('pageerror', (e) => pageErrors.push(e.message));
  await page.goto('/');
  const box = page.getByTestId('no-webgpu');
  await expect(box).toBeVisible();
  await expect(box.getByRole('heading', { name: 'WebGPU is not available here' })).toBeVisible();
  await expect(page.getByTestId('no-webgpu-reason')).toContainText(/WebGPU/);
  await expect(box).toContainText('--enable-unsafe-webgpu');
  await expect(box).toContainText('What still works');
  await expect(page.getByTestId('adapter')).toHaveCount(0);
  await expect(page.getByRole('button', { name: 'Run kernel self-test' })).toBeDisabled();
  await page.screenshot({ path: test.info().outputPath('studio-no-webgpu.png'), fullPage: true });
  expect(pageErrors).toEqual([]);
});
