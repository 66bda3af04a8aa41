// Image build helper: writes the package manifests of the image's install into OUT_DIR.
// Only the workspaces the `woodstream` command needs at run time are kept (the closure of
// @woodstream/cli's dependencies among the workspaces; the test harness and e2e are left
// out), without their devDependencies; of the root devDependencies only the compiler and the
// Node.js types stay. Against the same lockfile, `npm install` then gets what the build needs
// and `npm install --omit=dev` just what runs. Also writes OUT_DIR/workspaces.txt, one
// workspace path a line.
//
//   node docker/prod-manifests.mjs SRC_DIR OUT_DIR
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';

const [src, out] = process.argv.slice(2);
if (!src || !out) {
  console.error('usage: node docker/prod-manifests.mjs SRC_DIR OUT_DIR');
  process.exit(2);
}
const read = (file) => JSON.parse(readFileSync(join(src, file), 'utf8'));

/** package name -> workspace path */
const byName = new Map();
for (const group of ['libs', 'services']) {
  for (const dir of readdirSync(join(src, group))) {
    const manifest = join(group, dir, 'package.json');
    if (existsSync(join(src, manifest))) byName.set(read(manifest).name, join(group, dir));
  }
}

const keep = new Set();
const visit = (name) => {
  const path = byName.get(name);
  if (path === undefined || keep.has(path)) return;
  keep.add(path);
  for (const dep of Object.keys(read(join(path, 'package.json')).dependencies ?? {})) visit(dep);
};
visit('@woodstream/cli');

mkdirSync(out, { recursive: true });
const root = read('package.json');
const BUILD_TOOLS = ['typescript', '@types/node'];
root.devDependencies = Object.fromEntries(
  Object.entries(root.devDependencies ?? {}).filter(([name]) => BUILD_TOOLS.includes(name)),
);
delete root.scripts;
root.workspaces = [...keep].sort();
writeFileSync(join(out, 'package.json'), `${JSON.stringify(root, null, 2)}\n`);
for (const file of ['package-lock.json', '.npmrc']) copyFileSync(join(src, file), join(out, file));
for (const path of keep) {
  const manifest = read(join(path, 'package.json'));
  delete manifest.devDependencies;
  mkdirSync(join(out, path), { recursive: true });
  writeFileSync(join(out, path, 'package.json'), `${JSON.stringify(manifest, null, 2)}\n`);
}
writeFileSync(join(out, 'workspaces.txt'), `${[...keep].sort().join('\n')}\n`);
