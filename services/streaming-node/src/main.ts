#!/usr/bin/env node
// The streaming node process. Configuration: --config FILE, WOODSTREAM_NODE_* variables,
// --a.b=value flags (see docs/config.md). SIGTERM drains the node's channels, then exits.
import { nodeMain } from '@woodstream/runtime';

process.exitCode = await nodeMain(process.argv.slice(2), process.env);
process.exit();
