// Second public entry, `@woodstream/woodpecker/testing`: the contract suites every storage
// adapter must pass. Imported only by tests.
export { describeMetadataStoreContract } from './metadata-store-contract.js';
export type { MetadataStoreFactory } from './metadata-store-contract.js';
export { describeObjectStoreContract } from './object-store-contract.js';
export type { ObjectStoreFactory } from './object-store-contract.js';
