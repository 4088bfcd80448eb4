import { defineConfig } from 'vitest/config';

// Kernel tests run on real WebGPU (Dawn's node bindings) in forked processes: the native
// addon must stay in one process for the file's life, and two forks keep both cores busy.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});
