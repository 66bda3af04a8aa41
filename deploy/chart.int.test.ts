// The Helm chart (helm/woodstream): lint, render with the default values and the values files
// in helm/woodstream/ci, validate every manifest against the Kubernetes schemas
// (kubernetes-models), and load every rendered service config with the service's own schema,
// the way the process does at start (file + environment).
import { writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TObject } from '@sinclair/typebox';
import { ConfigError, loadConfig } from '@woodstream/config';
import { CoordinatorSchema, NodeSchema, StandaloneSchema } from '@woodstream/runtime';
import { makeTempDir, runCommand } from '@woodstream/testing';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';

const root = fileURLToPath(new URL('..', import.meta.url));
const chart = join(root, 'helm', 'woodstream');
const require = createRequire(import.meta.url);

interface Manifest {
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels?: Record<string, string> };
  [key: string]: unknown;
}

interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: unknown;
}

interface Container {
  name: string;
  args: string[];
  env?: EnvVar[];
  ports: { name: string; containerPort: number }[];
  livenessProbe: { httpGet: { path: string; port: string } };
  readinessProbe: { httpGet: { path: string; port: string } };
  lifecycle?: { preStop?: { exec?: { command: string[] } } };
  resources: { requests?: Record<string, unknown>; limits?: Record<string, unknown> };
  securityContext: Record<string, unknown>;
  volumeMounts: { name: string; mountPath: string }[];
}

interface PodSpec {
  containers: Container[];
  terminationGracePeriodSeconds: number;
  securityContext: Record<string, unknown>;
  affinity?: unknown;
}

interface Workload extends Manifest {
  spec: { replicas: number; template: { spec: PodSpec } };
}

let helm: string;

beforeAll(async () => {
  const { stdout } = await runCommand(process.execPath, [join(root, 'scripts', 'helm.mjs')], {
    timeoutMs: 60_000,
  });
  helm = stdout.trim();
});

const valuesArgs = (files: readonly string[], sets: readonly string[] = []): string[] => [
  ...files.flatMap((f) => ['-f', join(chart, f)]),
  ...sets.flatMap((s) => ['--set', s]),
];

async function render(files: readonly string[], sets: readonly string[] = []): Promise<Manifest[]> {
  const { stdout } = await runCommand(
    helm,
    ['template', 'ws', chart, '--namespace', 'streams', ...valuesArgs(files, sets)],
    { timeoutMs: 60_000 },
  );
  return parseAllDocuments(stdout)
    .map((doc) => {
      if (doc.errors.length > 0) throw new Error(`bad YAML from helm: ${doc.errors.join('; ')}`);
      return doc.toJS() as Manifest | null;
    })
    .filter((m): m is Manifest => m !== null);
}

/** Validates one manifest with the kubernetes-models class of its apiVersion and kind. */
function validateManifest(manifest: Manifest): void {
  if (manifest.apiVersion === 'monitoring.coreos.com/v1' && manifest.kind === 'ServiceMonitor') {
    // A CRD kubernetes-models does not know: check the parts Prometheus needs.
    const spec = manifest.spec as {
      selector?: { matchLabels?: Record<string, string> };
      endpoints?: { port?: string; path?: string }[];
    };
    expect(spec.selector?.matchLabels).toBeTypeOf('object');
    expect(spec.endpoints?.length).toBeGreaterThan(0);
    for (const e of spec.endpoints ?? [])
      expect(e).toMatchObject({ port: 'http', path: '/metrics' });
    return;
  }
  // kubernetes-models/<group>/<version>, or kubernetes-models/v1 for the core group.
  const models = require(`kubernetes-models/${manifest.apiVersion}`) as Record<
    string,
    (new (data: unknown) => { validate(): void }) | undefined
  >;
  const Model = models[manifest.kind];
  if (Model === undefined) throw new Error(`no schema for ${manifest.apiVersion} ${manifest.kind}`);
  new Model(manifest).validate();
}

function find<T extends Manifest = Manifest>(manifests: Manifest[], kind: string, name: string): T {
  const found = manifests.find((m) => m.kind === kind && m.metadata.name === name);
  if (found === undefined) {
    const have = manifests.map((m) => `${m.kind}/${m.metadata.name}`).join(', ');
    throw new Error(`no ${kind}/${name} among ${have}`);
  }
  return found as T;
}

const configMapData = (manifests: Manifest[]): Record<string, string> =>
  find<Manifest & { data: Record<string, string> }>(manifests, 'ConfigMap', 'ws-woodstream').data;

/**
 * Loads a rendered config file the way the process does: the file plus the container's
 * environment. Values from Secrets become placeholders; `$(POD_IP)` becomes a pod IP.
 */
async function loadRendered<S extends TObject>(
  schema: S,
  envPrefix: string,
  json: string,
  container: Container,
): Promise<Record<string, unknown>> {
  await using dir = await makeTempDir('chart-config');
  const file = join(dir.path, 'config.json');
  await writeFile(file, json);
  const env: Record<string, string> = {};
  for (const e of container.env ?? []) {
    env[e.name] =
      e.value !== undefined ? e.value.replace('$(POD_IP)', '10.1.2.3') : 'value-from-a-secret';
  }
  return await loadConfig(schema, { file, env, envPrefix });
}

const configFileArg = (container: Container): string => {
  const i = container.args.indexOf('--config');
  expect(i).toBeGreaterThan(0);
  return container.args[i + 1] as string;
};

const basename = (path: string): string => path.slice(path.lastIndexOf('/') + 1);

function portOf(container: Container, name: string): number {
  const port = container.ports.find((p) => p.name === name);
  if (port === undefined) throw new Error(`container ${container.name} has no port ${name}`);
  return port.containerPort;
}

function checkContainerBasics(container: Container): void {
  expect(container.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'http' });
  expect(container.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'http' });
  expect(container.resources.requests).toBeDefined();
  expect(container.resources.limits).toBeDefined();
  expect(container.securityContext).toMatchObject({
    allowPrivilegeEscalation: false,
    readOnlyRootFilesystem: true,
  });
  expect(container.volumeMounts.map((m) => m.mountPath)).toContain('/etc/woodstream');
}

const CASES = [
  { name: 'default values', files: [] as string[], mode: 'cluster' },
  { name: 'standalone', files: ['ci/standalone-values.yaml'], mode: 'standalone' },
  { name: 'cluster on AWS S3', files: ['ci/cluster-s3-values.yaml'], mode: 'cluster' },
  {
    name: 'cluster with custom resources and a ServiceMonitor',
    files: ['ci/cluster-resources-values.yaml'],
    mode: 'cluster',
  },
] as const;

describe('helm chart', () => {
  for (const c of CASES) {
    describe(c.name, () => {
      it('passes helm lint --strict', async () => {
        const { stdout } = await runCommand(
          helm,
          ['lint', '--strict', chart, ...valuesArgs(c.files)],
          { timeoutMs: 60_000 },
        );
        expect(stdout).toContain('0 chart(s) failed');
      });

      it('renders manifests that are valid against the Kubernetes schemas', async () => {
        const manifests = await render(c.files);
        expect(manifests.length).toBeGreaterThan(3);
        for (const m of manifests) {
          try {
            validateManifest(m);
          } catch (err) {
            throw new Error(`${m.kind}/${m.metadata.name}: ${String(err)}`, { cause: err });
          }
          expect(m.metadata.labels?.['app.kubernetes.io/instance']).toBe('ws');
        }
        const kinds = new Set(manifests.map((m) => m.kind));
        if (c.mode === 'standalone') {
          expect([...kinds].sort()).toEqual([
            'ConfigMap',
            'Service',
            'ServiceAccount',
            'StatefulSet',
          ]);
        } else {
          for (const kind of ['ConfigMap', 'Deployment', 'Service', 'PodDisruptionBudget'])
            expect(kinds).toContain(kind);
        }
      });

      it('renders configs that the services load with their own schemas', async () => {
        const manifests = await render(c.files);
        const data = configMapData(manifests);
        if (c.mode === 'standalone') {
          const sts = find<Workload>(manifests, 'StatefulSet', 'ws-woodstream');
          expect(sts.spec.replicas).toBe(1);
          const container = sts.spec.template.spec.containers[0] as Container;
          checkContainerBasics(container);
          expect(container.args.slice(0, 2)).toEqual(['run', 'standalone']);
          const file = basename(configFileArg(container));
          expect(Object.keys(data)).toEqual([file]);
          const config = await loadRendered(
            StandaloneSchema,
            'WOODSTREAM_STANDALONE',
            data[file] as string,
            container,
          );
          expect(config).toMatchObject({
            host: '0.0.0.0',
            coordinatorPort: portOf(container, 'grpc'),
            nodePort: portOf(container, 'node-grpc'),
            httpPort: portOf(container, 'http'),
            dataDir: '/var/lib/woodstream/data',
          });
          return;
        }

        const coordinator = find<Workload>(manifests, 'Deployment', 'ws-woodstream-coordinator');
        const cc = coordinator.spec.template.spec.containers[0] as Container;
        checkContainerBasics(cc);
        expect(cc.args.slice(0, 2)).toEqual(['run', 'coordinator']);
        const coordinatorConfig = await loadRendered(
          CoordinatorSchema,
          'WOODSTREAM_COORDINATOR',
          data[basename(configFileArg(cc))] as string,
          cc,
        );
        expect(coordinatorConfig).toMatchObject({
          grpc: { host: '0.0.0.0', port: portOf(cc, 'grpc') },
          http: { host: '0.0.0.0', port: portOf(cc, 'http') },
          metadata: { kind: 'etcd' },
        });

        const node = find<Workload>(manifests, 'Deployment', 'ws-woodstream-node');
        const pod = node.spec.template.spec;
        const nc = pod.containers[0] as Container;
        checkContainerBasics(nc);
        expect(nc.args.slice(0, 2)).toEqual(['run', 'node']);
        const nodeConfig = await loadRendered(
          NodeSchema,
          'WOODSTREAM_NODE',
          data[basename(configFileArg(nc))] as string,
          nc,
        );
        expect(nodeConfig).toMatchObject({
          grpc: {
            host: '0.0.0.0',
            port: portOf(nc, 'grpc'),
            advertiseAddress: `10.1.2.3:${portOf(nc, 'grpc')}`,
          },
          http: { host: '0.0.0.0', port: portOf(nc, 'http') },
          metadata: { kind: 'etcd', etcdEndpoints: expect.any(Array) as unknown },
          storage: { mode: 'object' },
        });
        expect((nodeConfig['metadata'] as { etcdEndpoints: string[] }).etcdEndpoints).toEqual(
          (coordinatorConfig['metadata'] as { etcdEndpoints: string[] }).etcdEndpoints,
        );
        // The kubelet must not kill a node that is still draining: preStop + drain < grace.
        const preStopSeconds = Number(nc.lifecycle?.preStop?.exec?.command[1]);
        const drainMs = nodeConfig['drainTimeoutMs'] as number;
        expect(pod.terminationGracePeriodSeconds * 1000).toBeGreaterThan(
          preStopSeconds * 1000 + drainMs,
        );
        expect(pod.affinity).toBeDefined();
        find(manifests, 'PodDisruptionBudget', 'ws-woodstream-node');
      });
    });
  }

  it('S3 credentials and the admin token come from Secrets, never from the ConfigMap', async () => {
    const manifests = await render(['ci/cluster-s3-values.yaml']);
    const nc = find<Workload>(manifests, 'Deployment', 'ws-woodstream-node').spec.template.spec
      .containers[0] as Container;
    const secretEnv = (nc.env ?? []).filter((e) => e.valueFrom !== undefined).map((e) => e.name);
    expect(secretEnv).toEqual(
      expect.arrayContaining([
        'WOODSTREAM_NODE_STORAGE_S3_ACCESS_KEY_ID',
        'WOODSTREAM_NODE_STORAGE_S3_SECRET_ACCESS_KEY',
      ]),
    );
    const coordinator = JSON.parse(configMapData(manifests)['coordinator.json'] as string) as {
      adminTokenFile: string;
    };
    const cc = find<Workload>(manifests, 'Deployment', 'ws-woodstream-coordinator').spec.template
      .spec.containers[0] as Container;
    const tokenDir = coordinator.adminTokenFile.slice(
      0,
      coordinator.adminTokenFile.lastIndexOf('/'),
    );
    expect(cc.volumeMounts.map((m) => m.mountPath)).toContain(tokenDir);
    expect(JSON.stringify(configMapData(manifests))).not.toMatch(/secretAccessKey|accessKeyId/);
  });

  it('a bad service option in the values fails the config check', async () => {
    const cases: [string, TObject, string, string, RegExp][] = [
      [
        'node.config.drainTimeoutMs=-5',
        NodeSchema,
        'WOODSTREAM_NODE',
        'node.json',
        /drainTimeoutMs/,
      ],
      [
        'coordinator.config.pchannelCont=8',
        CoordinatorSchema,
        'WOODSTREAM_COORDINATOR',
        'coordinator.json',
        /pchannelCont/,
      ],
      ['logLevel=verbose', NodeSchema, 'WOODSTREAM_NODE', 'node.json', /schema|logLevel/],
    ];
    for (const [set, schema, prefix, key, problem] of cases) {
      // values.schema.json leaves service options to the service schema; logLevel it checks.
      const rendered = await render([], [set]).catch((err: unknown) => err as Error);
      if (rendered instanceof Error) {
        expect(rendered.message).toMatch(problem);
        continue;
      }
      const json = configMapData(rendered)[key] as string;
      await using dir = await makeTempDir('chart-bad');
      const file = join(dir.path, key);
      await writeFile(file, json);
      const error = await loadConfig(schema, { file, env: {}, envPrefix: prefix }).catch(
        (err: unknown) => err,
      );
      expect(error, set).toBeInstanceOf(ConfigError);
      expect((error as ConfigError).problems.join('\n'), set).toMatch(problem);
    }
  });

  it('values.schema.json and the chart reject values that cannot work', async () => {
    const bad: [string[], RegExp][] = [
      [['node.replicaz=3'], /replicaz/],
      [['coordinator.ports.grpc=abc'], /grpc/],
      [['mode=cluster', 'storage.s3.bucket='], /bucket/],
      [['node.terminationGracePeriodSeconds=20'], /terminationGracePeriodSeconds/],
    ];
    for (const [sets, problem] of bad) {
      const error = await render([], sets).catch((err: unknown) => err);
      expect(error, sets.join(' ')).toBeInstanceOf(Error);
      expect(String(error)).toMatch(problem);
    }
  });

  it('the manifest validation catches a wrong field type', async () => {
    const manifests = await render([]);
    const node = find<Workload>(manifests, 'Deployment', 'ws-woodstream-node');
    const broken = { ...node, spec: { ...node.spec, replicas: 'three' } };
    expect(() => validateManifest(broken)).toThrow(/replicas/);
  });
});
