#!/usr/bin/env node
// Builds the Woodstream container image with podman, also on a machine that cannot reach any
// container registry.
//
//   node scripts/image.mjs base                 # the local base image; prints its tag
//   node scripts/image.mjs build [--tag TAG]    # base (if needed) + docker/Dockerfile; prints TAG
//   node scripts/image.mjs podman-args          # the podman flags this machine needs, one a line
//
// The base image stands in for node:20-bookworm-slim: a Debian bookworm minbase root made with
// debootstrap (from the apt mirror this machine already uses) plus this machine's own Node.js
// binary and npm, imported with `podman import`. It is built once per Node version and reused
// (cached by tag). The build runs with --network=none and gets npm packages from this machine's
// npm cache (mounted into the build, `npm ci --offline`), so run `npm ci` on the host first.
//
// On a machine with registry access none of this is needed:
//   podman build -f docker/Dockerfile -t woodstream .   (BASE defaults to node:20-bookworm-slim)
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, realpathSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const SUITE = 'bookworm';
const DEFAULT_MIRROR = 'http://deb.debian.org/debian';

/**
 * Flags every podman command needs here: crun cannot run on hybrid cgroups, and ulimits above
 * the current ones fail without CAP_SYS_RESOURCE, so use runc and the current limits.
 */
export function podmanGlobalArgs() {
  return ['--runtime', 'runc'];
}

export function podmanUlimitArgs() {
  const limit = (flag) => {
    const r = spawnSync('sh', ['-c', `ulimit ${flag}`], { encoding: 'utf8' });
    const n = Number(r.stdout.trim());
    return Number.isInteger(n) && n > 0 ? Math.min(n, 1_048_576) : 1024;
  };
  const nofile = limit('-n');
  const nproc = limit('-u');
  return ['--ulimit', `nofile=${nofile}:${nofile}`, '--ulimit', `nproc=${nproc}:${nproc}`];
}

function podman(args, options = {}) {
  return execFileSync('podman', [...podmanGlobalArgs(), ...args], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    ...options,
  });
}

function imageExists(tag) {
  return spawnSync('podman', [...podmanGlobalArgs(), 'image', 'exists', tag]).status === 0;
}

/** The first Debian mirror in this machine's apt sources, else deb.debian.org. */
function debianMirror() {
  const deb822 = '/etc/apt/sources.list.d/debian.sources';
  if (existsSync(deb822)) {
    const m = readFileSync(deb822, 'utf8').match(/^URIs:\s*(\S+)/m);
    if (m && !m[1].includes('security')) return m[1];
  }
  if (existsSync('/etc/apt/sources.list')) {
    const m = readFileSync('/etc/apt/sources.list', 'utf8').match(
      /^deb\s+(?:\[[^\]]*\]\s+)?(\S+)/m,
    );
    if (m) return m[1];
  }
  return DEFAULT_MIRROR;
}

/** The npm package directory that belongs to this Node.js (…/lib/node_modules/npm). */
function npmDir() {
  const candidates = [
    join(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm'),
    process.env.npm_execpath ? resolve(dirname(process.env.npm_execpath), '..') : '',
  ];
  const found = candidates.find((d) => d && existsSync(join(d, 'package.json')));
  if (!found) throw new Error(`cannot find npm next to ${process.execPath}`);
  return realpathSync(found);
}

export function baseTag() {
  return `localhost/woodstream-base:node${process.versions.node}-${SUITE}`;
}

/** Builds the local base image unless an image with its tag exists. Returns the tag. */
export function ensureBase() {
  const tag = baseTag();
  if (imageExists(tag)) return tag;
  const work = mkdtempSync(join(tmpdir(), 'woodstream-base-'));
  const rootfs = join(work, 'rootfs');
  try {
    console.error(`building ${tag} with debootstrap (${SUITE}, ${debianMirror()})`);
    execFileSync(
      'debootstrap',
      [
        '--variant=minbase',
        // Node.js links libstdc++; TLS to S3 endpoints needs the CA bundle.
        '--include=libstdc++6,ca-certificates',
        SUITE,
        rootfs,
        debianMirror(),
      ],
      { stdio: ['ignore', 'ignore', 'inherit'] },
    );
    // The same layout as the official node images: /usr/local/bin/node, npm under /usr/local/lib.
    execFileSync('install', ['-m', '0755', process.execPath, join(rootfs, 'usr/local/bin/node')]);
    execFileSync('mkdir', ['-p', join(rootfs, 'usr/local/lib/node_modules')]);
    execFileSync('cp', ['-a', npmDir(), join(rootfs, 'usr/local/lib/node_modules/npm')]);
    for (const bin of ['npm', 'npx']) {
      execFileSync('ln', [
        '-sf',
        `../lib/node_modules/npm/bin/${bin}-cli.js`,
        join(rootfs, `usr/local/bin/${bin}`),
      ]);
    }
    // apt caches and lists are not needed at run time.
    rmSync(join(rootfs, 'var/cache/apt/archives'), { recursive: true, force: true });
    rmSync(join(rootfs, 'var/lib/apt/lists'), { recursive: true, force: true });
    const tar = spawnSync('tar', ['-C', rootfs, '-c', '.'], {
      maxBuffer: 4 * 1024 * 1024 * 1024,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    if (tar.status !== 0) throw new Error(`tar failed (${tar.status ?? tar.signal})`);
    podman(
      [
        'import',
        '--change',
        'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
        '--change',
        'CMD ["node"]',
        '-',
        tag,
      ],
      { input: tar.stdout, stdio: ['pipe', 'ignore', 'inherit'] },
    );
    return tag;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

function npmCacheDir() {
  return execFileSync('npm', ['config', 'get', 'cache'], { encoding: 'utf8', cwd: root }).trim();
}

/**
 * Makes sure the npm cache holds everything the image's installs need, so they can run with
 * --offline inside a build without network: the same manifests the Dockerfile uses, installed
 * once on this machine (which can reach the npm registry) with --prefer-offline.
 */
function warmNpmCache() {
  const work = mkdtempSync(join(tmpdir(), 'woodstream-npm-'));
  try {
    execFileSync(process.execPath, [join(root, 'docker', 'prod-manifests.mjs'), root, work]);
    execFileSync(
      'npm',
      ['install', '--prefer-offline', '--ignore-scripts', '--no-audit', '--no-fund', '--silent'],
      { cwd: work, stdio: ['ignore', 'ignore', 'inherit'] },
    );
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** Builds docker/Dockerfile from the repository root with the local base image. */
export function buildImage(tag) {
  const base = ensureBase();
  warmNpmCache();
  const args = [
    'build',
    // HEALTHCHECK is kept only in the docker image format.
    '--format',
    'docker',
    '--network=none',
    ...podmanUlimitArgs(),
    '--build-arg',
    `BASE=${base}`,
    '--build-arg',
    'NPM_OFFLINE=true',
    '--volume',
    `${npmCacheDir()}:/root/.npm`,
    '-f',
    join(root, 'docker', 'Dockerfile'),
    '-t',
    tag,
    root,
  ];
  const r = spawnSync('podman', [...podmanGlobalArgs(), ...args], {
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  if (r.status !== 0) throw new Error(`podman build failed (${r.status ?? r.signal})`);
  return tag;
}

const isMain = process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (isMain) {
  const [command, ...rest] = process.argv.slice(2);
  const tagIndex = rest.indexOf('--tag');
  const tag = tagIndex >= 0 && rest[tagIndex + 1] ? rest[tagIndex + 1] : 'localhost/woodstream:dev';
  try {
    if (command === 'base') console.log(ensureBase());
    else if (command === 'build') {
      // Progress of the build goes to stderr; stdout carries only the tag.
      console.log(buildImage(tag));
    } else if (command === 'podman-args') {
      console.log([...podmanGlobalArgs(), ...podmanUlimitArgs()].join('\n'));
    } else {
      console.error('usage: node scripts/image.mjs base | build [--tag TAG] | podman-args');
      process.exit(2);
    }
  } catch (err) {
    console.error(err instanceof Error ? err.message : String(err));
    process.exit(1);
  }
}
