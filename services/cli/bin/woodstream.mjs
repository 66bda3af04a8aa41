#!/usr/bin/env node
// The installed `woodstream` command (`npx woodstream …` in a checkout). It runs the CLI's
// TypeScript source in this process, the way `npm start` does (tsx, with the workspace
// packages resolved to their sources), so a fresh clone needs no build step. In-process rather
// than a child: signals and the exit code are the CLI's own, and nothing outlives a kill.
import { register } from 'node:module';
import { register as registerTsx } from 'tsx/esm/api';

// The equivalent of `--conditions=@woodstream/source` for every import from here on.
register(
  `data:text/javascript,${encodeURIComponent(
    'export async function resolve(specifier, context, next) {' +
      " return next(specifier, { ...context, conditions: [...context.conditions, '@woodstream/source'] }); }",
  )}`,
);
registerTsx();
await import('../src/main.ts');
