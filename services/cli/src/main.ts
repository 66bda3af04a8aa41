#!/usr/bin/env node
// The `woodstream` command: run the services, produce, consume, inspect.
import { runCli } from './cli.js';

const controller = new AbortController();
const code = await runCli(process.argv.slice(2), {
  out: (line) => process.stdout.write(`${line}\n`),
  err: (line) => process.stderr.write(`${line}\n`),
  progress: (text) => process.stderr.write(text),
  stdin: process.stdin,
  isTty: process.stderr.isTTY,
  env: process.env,
  signal: controller.signal,
});
process.exit(code);
