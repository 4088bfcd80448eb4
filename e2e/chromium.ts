/**
 * How the end-to-end tests launch Debian's Chromium (Playwright cannot download browsers here).
 * WebGPU in headless Chromium on Linux needs --enable-unsafe-webgpu; it then runs on SwiftShader.
 * The other flags keep a root, offline, headless Chromium quiet: no sandbox (root), no calls home.
 */
import type { Page } from '@playwright/test';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

export const QUIET_FLAGS = [
  '--no-sandbox',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-quic',
];

export const WEBGPU_FLAGS = ['--enable-unsafe-webgpu', '--enable-features=Vulkan'];

/** Where the specs' screenshots go: docs/img with UPDATE_SCREENSHOTS=1 (npm run screenshots), else test-results. */
export const SCREENSHOTS = process.env.UPDATE_SCREENSHOTS ? join(process.cwd(), 'docs', 'img') : join(process.cwd(), 'test-results', 'screenshots');
mkdirSync(SCREENSHOTS, { recursive: true });

/** The page's uncaught errors and console errors, collected as they happen (a spec expects none). */
export function collectErrors(page: Page): string[] {
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(`console: ${m.text()}`);
  });
  return errors;
}
