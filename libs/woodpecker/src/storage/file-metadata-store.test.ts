import { describe, expect, it } from 'vitest';
import { FileMetadataStore } from './file-metadata-store.js';

const enc = new TextEncoder();

describe('FileMetadataStore group commit', () => {
  it('writes a txn issued while the previous group finishes, whatever the microtask gap', async () => {
    const store = await FileMetadataStore.open({});
    try {
      for (let hops = 0; hops < 24; hops++) {
        const first = store.txn([], [{ type: 'put', key: `a${hops}`, value: enc.encode('1') }]);
        for (let i = 0; i < hops; i++) await Promise.resolve();
        const second = store.txn([], [{ type: 'put', key: `b${hops}`, value: enc.encode('2') }]);
        const timeout = new Promise((resolve) => setTimeout(resolve, 1_000, 'stuck'));
        expect(await Promise.race([Promise.all([first, second]).then(() => 'ok'), timeout])).toBe(
          'ok',
        );
      }
    } finally {
      await store.close();
    }
  }, 5_000);
});
