import { defineConfig } from 'vitest/config';

// Privileged suites (BPF load, test-run, namespaces) share kernel state such as
// interface names and pinned maps, so files run in separate processes and never
// two at a time; see test/helpers/privilege.ts for how they skip outside root.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // fast-check runs a fixed seed in the suite (test/helpers/fixed-seed.ts); `npm run fuzz` is the random campaign.
    setupFiles: ['test/helpers/fixed-seed.ts'],
    pool: 'forks',
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 120_000,
  },
});
