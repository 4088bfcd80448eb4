import { defineConfig } from '@playwright/test';
import { CHROMIUM, QUIET_FLAGS, WEBGPU_FLAGS } from './e2e/chromium';

const PORT = Number(process.env.E2E_PORT ?? 4183);

// The end-to-end tier: the production build, served by `vite preview`, in Debian's Chromium
// with WebGPU on (SwiftShader here). e2e/no-webgpu.spec.ts launches without the WebGPU flag.
export default defineConfig({
  testDir: 'e2e',
  outputDir: 'test-results',
  fullyParallel: false,
  workers: 1,
  forbidOnly: !!process.env.CI,
  retries: 0,
  timeout: 90_000,
  expect: { timeout: 30_000 },
  reporter: [['list']],
  use: {
    baseURL: `http://127.0.0.1:${PORT}`,
    browserName: 'chromium',
    headless: true,
    launchOptions: { executablePath: CHROMIUM, args: [...QUIET_FLAGS, ...WEBGPU_FLAGS] },
    trace: 'retain-on-failure',
  },
  webServer: {
    command: `npx vite build --logLevel warn && npx vite preview --port ${PORT} --strictPort --host 127.0.0.1`,
    url: `http://127.0.0.1:${PORT}`,
    reuseExistingServer: !process.env.CI,
    timeout: 120_000,
    stdout: 'ignore',
    stderr: 'pipe',
  },
});
