#!/usr/bin/env node
// Checks that the system programs the integration and e2e tests start are installed:
// etcd (Debian etcd-server), a single-node Ceph cluster with radosgw, and podman with runc
// and debootstrap for the container image test (e2e/image.test.ts builds a local base image,
// since no container registry is needed or assumed). When running as
// root on Debian it installs what is missing with apt-get; otherwise it prints the exact
// command to run and exits 1. Nothing is downloaded from anywhere but Debian's repositories.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';

/** program -> Debian package that provides it */
const REQUIRED = [
  ['etcd', 'etcd-server'],
  ['etcdctl', 'etcd-client'],
  ['ceph-mon', 'ceph-mon'],
  ['ceph-osd', 'ceph-osd'],
  ['radosgw', 'radosgw'],
  ['radosgw-admin', 'radosgw'],
  ['ceph', 'ceph-common'],
  ['ceph-authtool', 'ceph-common'],
  ['monmaptool', 'ceph-common'],
  ['podman', 'podman'],
  // crun cannot run on hybrid cgroups; the image scripts pass --runtime runc.
  ['runc', 'runc'],
  ['debootstrap', 'debootstrap'],
  // Published container ports (rootful podman's CNI bridge and port mapping).
  ['/usr/lib/cni/bridge', 'containernetworking-plugins'],
  ['iptables', 'iptables'],
];

function onPath(program) {
  if (program.startsWith('/')) return existsSync(program);
  const dirs = (process.env.PATH ?? '')
    .split(delimiter)
    .concat(['/usr/sbin', '/usr/bin', '/sbin', '/bin']);
  return dirs.some((dir) => dir && existsSync(join(dir, program)));
}

function isDebian() {
  try {
    return /^ID=debian$/m.test(readFileSync('/etc/os-release', 'utf8'));
  } catch {
    return false;
  }
}

const missing = [
  ...new Set(REQUIRED.filter(([program]) => !onPath(program)).map(([, pkg]) => pkg)),
];
if (missing.length === 0) process.exit(0);

const installCommand = `apt-get update && apt-get install -y --no-install-recommends ${missing.join(' ')}`;
const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
if (!isRoot || !isDebian()) {
  console.error(
    `The tests need these Debian packages, which are not installed: ${missing.join(', ')}.`,
  );
  console.error(`Install them as root, then run the tests again:\n\n  ${installCommand}\n`);
  process.exit(1);
}

console.error(`installing test dependencies from Debian: ${missing.join(' ')}`);
const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
for (const args of [
  ['update', '-q'],
  ['install', '-y', '-q', '--no-install-recommends', ...missing],
]) {
  const result = spawnSync('apt-get', args, { stdio: 'inherit', env });
  if (result.status !== 0) {
    console.error(`apt-get ${args.join(' ')} failed (exit ${result.status ?? result.signal}).`);
    console.error(`Fix the cause above, or install by hand: ${installCommand}`);
    process.exit(1);
  }
}
const still = REQUIRED.filter(([program]) => !onPath(program)).map(([program]) => program);
if (still.length > 0) {
  console.error(`installed, but still not found on PATH: ${still.join(', ')}`);
  process.exit(1);
}
