// Second public entry, `@woodstream/woodpecker/testing`: the contract suites every storage
// adapter must pass, and a gate for object stores. Imported only by tests.
export { describeMetadataStoreContract } from './metadata-store-contract.js';
export type { MetadataStoreFactory } from './metadata-store-contract.js';
export { describeObjectStoreContract } from './object-store-contract.js';
export type { ObjectStoreFactory } from './object-store-contract.js';
export { gatedObjectStore } from './gated-object-store.js';
export type { GatedObjectStore } from './gated-object-store.js';
