#!/usr/bin/env node
// Generates TypeScript from proto/*.proto into libs/proto/src/gen, or checks that the
// committed generated code matches what the .proto files produce.
//
//   node scripts/proto.mjs generate
//   node scripts/proto.mjs check [--proto DIR] [--gen DIR]
//
// `check` generates into a temporary directory and compares it file by file with the
// committed code; it exits 1 and names every differing file when they disagree.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, existsSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const template = join(root, 'proto', 'buf.gen.yaml');
const genRelative = join('libs', 'proto', 'src', 'gen');
const buf = join(root, 'node_modules', '.bin', 'buf');

function arg(name, fallback) {
  const i = process.argv.indexOf(name);
  return i >= 0 && process.argv[i + 1] ? resolve(process.argv[i + 1]) : fallback;
}

function generate(protoDir, outputBase) {
  // buf resolves the plugin path in the template relative to the working directory.
  execFileSync(buf, ['generate', protoDir, '--template', template, '--output', outputBase], {
    cwd: root,
    stdio: ['ignore', 'inherit', 'inherit'],
  });
}

function listFiles(dir) {
  if (!existsSync(dir)) return [];
  const out = [];
  for (const name of readdirSync(dir)) {
    const full = join(dir, name);
    if (statSync(full).isDirectory()) out.push(...listFiles(full).map((f) => join(name, f)));
    else out.push(name);
  }
  return out.sort();
}

const command = process.argv[2];
const protoDir = arg('--proto', join(root, 'proto'));

if (command === 'generate') {
  rmSync(join(root, genRelative), { recursive: true, force: true });
  generate(protoDir, root);
  console.log(`generated ${listFiles(join(root, genRelative)).length} files into ${genRelative}`);
} else if (command === 'check') {
  const committed = arg('--gen', join(root, genRelative));
  const scratch = mkdtempSync(join(tmpdir(), 'woodstream-proto-'));
  try {
    generate(protoDir, scratch);
    const fresh = join(scratch, genRelative);
    const names = new Set([...listFiles(fresh), ...listFiles(committed)]);
    const stale = [];
    for (const name of names) {
      const a = join(fresh, name);
      const b = join(committed, name);
      if (!existsSync(a)) stale.push(`${name}: committed but no longer generated`);
      else if (!existsSync(b)) stale.push(`${name}: generated but not committed`);
      else if (!readFileSync(a).equals(readFileSync(b))) stale.push(`${name}: differs`);
    }
    if (stale.length > 0) {
      console.error(`generated proto code is stale (${relative(root, committed) || committed}):`);
      for (const line of stale) console.error(`  ${line}`);
      console.error('run `npm run proto:gen` and commit the result');
      process.exit(1);
    }
    console.log(`proto code is up to date (${names.size} files)`);
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
} else {
  console.error('usage: node scripts/proto.mjs generate | check [--proto DIR] [--gen DIR]');
  process.exit(2);
}
