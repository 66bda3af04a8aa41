import { defineConfig } from 'vitest/config';

// Workspace libs resolve to their TypeScript sources (the `@woodstream/source` export
// condition), so tests never need a build first.
// 'module' is left out on purpose: it makes some packages (the AWS SDK) resolve to builds
// that Node itself cannot load.
const conditions = ['@woodstream/source', 'node', 'default'];
const resolve = { conditions };
const ssr = { resolve: { conditions } };
const globalSetup = ['libs/testing/src/global-setup.ts'];
const sources = ['libs/*/src/**', 'services/*/src/**', 'scripts/**'];

export default defineConfig({
  resolve,
  ssr,
  test: {
    // The AWS SDK warns on every client that future releases need Node 22; the version is pinned.
    env: { AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' },
    projects: [
      {
        extends: true,
        test: {
          name: 'unit',
          include: sources.map((s) => `${s}/*.test.ts`),
          exclude: ['**/*.int.test.ts', '**/node_modules/**', '**/dist/**'],
          testTimeout: 10_000,
        },
      },
      {
        extends: true,
        test: {
          name: 'integration',
          // deploy/: the Helm chart's tests (they run the helm binary).
          include: [...sources.map((s) => `${s}/*.int.test.ts`), 'deploy/*.int.test.ts'],
          exclude: ['**/node_modules/**', '**/dist/**'],
          globalSetup,
          testTimeout: 60_000,
          hookTimeout: 120_000,
        },
      },
      {
        extends: true,
        test: {
          name: 'e2e',
          include: ['e2e/**/*.test.ts'],
          exclude: ['**/node_modules/**'],
          globalSetup,
          testTimeout: 180_000,
          hookTimeout: 180_000,
          // Each e2e test runs several processes; on 2 cores they must not compete.
          fileParallelism: false,
        },
      },
    ],
  },
});
