#!/usr/bin/env node
// The `woodstream` command. Only the command surface exists so far: every `run` target
// reports that the service is not part of this build and exits non-zero, starting nothing.
import { runCli } from './cli.js';

process.exitCode = await runCli(process.argv.slice(2), {
  out: (line) => process.stdout.write(`${line}\n`),
  err: (line) => process.stderr.write(`${line}\n`),
});
