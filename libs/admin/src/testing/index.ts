// Second public entry, `@woodstream/admin/testing`: an in-process cluster to run the admin API
// against. Imported only by tests.
export { startTestCluster, WAIT } from './test-cluster.js';
export type { TestCluster } from './test-cluster.js';
