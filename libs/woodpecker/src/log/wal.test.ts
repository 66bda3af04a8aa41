import { FileMetadataStore } from '../storage/file-metadata-store.js';
import { MemoryObjectStore } from '../storage/memory-object-store.js';
import { describeWalSuite } from './wal-suite.js';

// The whole WAL suite on in-memory backends (both trusted through their contract suites).
for (const conditionalWrites of [true, false]) {
  describeWalSuite(
    `memory objects (conditional writes: ${conditionalWrites}) + memory metadata`,
    async () => {
      const metadata = await FileMetadataStore.open({});
      const objects = new MemoryObjectStore({ conditionalWrites });
      return {
        metadata,
        objects,
        storage: { mode: 'object', objectStore: objects },
        cleanup: async () => {
          await metadata.close();
          await objects.close();
        },
      };
    },
  );
}
