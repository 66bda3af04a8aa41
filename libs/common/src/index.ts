// Public entry of @woodstream/common.
export { abortable, sleep } from './abort.js';
export { AbortFanout } from './abort-fanout.js';
export { assert, AssertionError } from './assert.js';
export { errorCode, isRetryable, WoodstreamError } from './errors.js';
export { intOption } from './options.js';
export { retry } from './retry.js';
export type { RetryPolicy } from './retry.js';
export { utf8Length, writeUtf8 } from './utf8.js';
