import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    exclude: ['**/node_modules/**', 'test/bench/**', '.services/**'],
    globalSetup: ['test/globalSetup.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // Test files share one Postgres, clamd and radosgw on a 2-core machine: run files
    // one after another (tests inside a file still run in order).
    fileParallelism: false,
  },
});
