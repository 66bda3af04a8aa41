// Writes docs/config.md from the services' config schemas, or with --check fails when the
// committed file is stale. Run: npm run docs:config [-- --check]
import { readFileSync, writeFileSync } from 'node:fs';
import { describeConfig } from '@woodstream/config';
import { CoordinatorSchema, NodeSchema, StandaloneSchema } from '@woodstream/runtime';

const target = new URL('../docs/config.md', import.meta.url);
const text = `# Configuration

Generated from the config schemas by \`npm run docs:config\`; CI fails when it is stale.

Each process reads, highest precedence first: \`--a.b=value\` flags, environment variables, a JSON
file given by \`--config FILE\` (or \`<PREFIX>_CONFIG\`), and the defaults below. Unknown keys (in
the file, as flags, or as \`<PREFIX>_*\` variables), stray arguments and out-of-range values stop the
process at start with every problem listed (exit code 2). Secrets are never logged.

## Standalone (\`woodstream run standalone\`, \`npm start\`)

${describeConfig(StandaloneSchema, 'WOODSTREAM_STANDALONE')}

## Streaming node (\`woodstream run node\`)

${describeConfig(NodeSchema, 'WOODSTREAM_NODE')}

## Streaming coordinator (\`woodstream run coordinator\`)

${describeConfig(CoordinatorSchema, 'WOODSTREAM_COORDINATOR')}
`;

if (process.argv.includes('--check')) {
  let current = '';
  try {
    current = readFileSync(target, 'utf8');
  } catch {
    // missing counts as stale
  }
  if (current !== text) {
    process.stderr.write('docs/config.md is stale: run `npm run docs:config` and commit it\n');
    process.exit(1);
  }
  process.stdout.write('docs/config.md is up to date\n');
} else {
  writeFileSync(target, text);
  process.stdout.write('wrote docs/config.md\n');
}
