/**
 * Vite config of the TensorFlow.js peer page (bench/page/index.html), separate from the studio's.
 * The root is the repository root, because the engine's shader map globs '/shaders/**' from the
 * root; the page is served at /bench/page/index.html. Built into .cache/bench-page (ignored) by
 * `npm run bench -- peer --browser` (bench/page/runner.ts), or served live with
 * `npx vite --config bench/page/vite.config.ts` and opened at /bench/page/index.html.
 */
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

const root = fileURLToPath(new URL('../..', import.meta.url));

export default defineConfig({
  root,
  publicDir: false,
  logLevel: 'warn',
  server: { host: '127.0.0.1', port: 5183 },
  preview: { host: '127.0.0.1', port: 4193 },
  build: {
    target: 'es2022',
    outDir: '.cache/bench-page',
    emptyOutDir: true,
    chunkSizeWarningLimit: 4096, // tfjs-core and two backends are one big chunk; it is a benchmark page
    rollupOptions: { input: { peer: fileURLToPath(new URL('./index.html', import.meta.url)) } },
  },
});
