// Public entry of @woodstream/config.
export {
  ConfigError,
  describeConfig,
  envName,
  loadConfig,
  parseFlags,
  redact,
} from './load-config.js';
export type { ConfigSources } from './load-config.js';
