import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Builds run real containers, mounts and a registry: generous per-test limits, files in separate
    // processes so one file's mounts and signals never touch another's.
    pool: 'forks',
    testTimeout: 180_000,
    hookTimeout: 180_000,
    globalSetup: ['test/helpers/global-setup.ts'],
    reporters: ['default'],
  },
});
