import { readFile } from 'node:fs/promises';
import { Kind, type TObject, type TSchema, type Static } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';

/** A configuration that failed validation: every problem, each with its path and source. */
export class ConfigError extends Error {
  readonly code = 'CONFIG_INVALID';
  readonly retryable = false;
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  - ${problems.join('\n  - ')}`);
    this.name = 'ConfigError';
  }
}

/**
 * Names Kubernetes gives the service-link variables of a Service: `<NAME>_SERVICE_HOST`,
 * `<NAME>_SERVICE_PORT[_<PORTNAME>]`, `<NAME>_PORT` and `<NAME>_PORT_<n>_<PROTO>[_ADDR|_PORT|_PROTO]`.
 */
const SERVICE_LINK =
  /_(SERVICE_HOST|SERVICE_PORT(_[A-Z0-9_]+)?|PORT|PORT_\d+_(TCP|UDP|SCTP)(_ADDR|_PORT|_PROTO)?)$/;

/** Sources of configuration, highest precedence first: overrides (flags) > env > file > defaults. */
export interface ConfigSources {
  /** Path of a JSON file, or undefined. */
  file?: string;
  /** The environment to read `<envPrefix>_<PATH>` variables from (pass process.env in mains only). */
  env?: Record<string, string | undefined>;
  /** e.g. `WOODSTREAM_NODE`: `grpc.port` is read from `WOODSTREAM_NODE_GRPC_PORT`. */
  envPrefix?: string;
  /** Dotted-path overrides, e.g. from `--grpc.port=7000` flags. Values are strings or typed. */
  overrides?: Record<string, unknown>;
}

interface Leaf {
  path: string[];
  schema: TSchema;
}

function leaves(schema: TObject, prefix: string[] = []): Leaf[] {
  const out: Leaf[] = [];
  for (const [key, child] of Object.entries(schema.properties)) {
    const path = [...prefix, key];
    if (child[Kind] === 'Object') out.push(...leaves(child as TObject, path));
    else out.push({ path, schema: child });
  }
  return out;
}

const snake = (s: string): string => s.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase();

/** The environment variable that sets `path`. */
export function envName(prefix: string, path: readonly string[]): string {
  return `${prefix}_${path.map(snake).join('_')}`;
}

/** Parses a text value (env, flag) as the leaf's type. Returns the text unchanged when it does not parse. */
function parseText(text: string, schema: TSchema): unknown {
  const kind = schema[Kind];
  if (kind === 'Integer' || kind === 'Number') {
    const n = Number(text);
    return text.trim() === '' || Number.isNaN(n) ? text : n;
  }
  if (kind === 'Boolean') return text === 'true' ? true : text === 'false' ? false : text;
  if (kind === 'Array' || kind === 'Object') {
    try {
      return JSON.parse(text) as unknown;
    } catch {
      // Arrays of strings may be given comma-separated.
      return kind === 'Array'
        ? text
            .split(',')
            .map((s) => s.trim())
            .filter(Boolean)
        : text;
    }
  }
  return text;
}

function setPath(target: Record<string, unknown>, path: readonly string[], value: unknown): void {
  let node = target;
  for (const key of path.slice(0, -1)) {
    const next = node[key];
    if (typeof next !== 'object' || next === null || Array.isArray(next)) node[key] = {};
    node = node[key] as Record<string, unknown>;
  }
  node[path.at(-1) as string] = value;
}

function deepMerge(
  base: Record<string, unknown>,
  top: Record<string, unknown>,
): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(top)) {
    const b = out[k];
    out[k] =
      typeof v === 'object' &&
      v !== null &&
      !Array.isArray(v) &&
      typeof b === 'object' &&
      b !== null &&
      !Array.isArray(b)
        ? deepMerge(b as Record<string, unknown>, v as Record<string, unknown>)
        : v;
  }
  return out;
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

/**
 * Loads a configuration: defaults from the schema, then the JSON file, then environment
 * variables, then overrides. Unknown keys (in the file or among overrides) and values outside
 * the schema are errors; every problem is reported at once. Returns a deeply frozen object.
 */
export async function loadConfig<S extends TObject>(
  schema: S,
  sources: ConfigSources = {},
): Promise<Static<S>> {
  const problems: string[] = [];
  const known = new Map(leaves(schema).map((l) => [l.path.join('.'), l]));
  let merged: Record<string, unknown> = Value.Default(schema, {}) as Record<string, unknown>;

  if (sources.file !== undefined) {
    try {
      const parsed = JSON.parse(await readFile(sources.file, 'utf8')) as unknown;
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
        problems.push(`${sources.file}: must hold a JSON object`);
      else merged = deepMerge(merged, parsed as Record<string, unknown>);
    } catch (err) {
      problems.push(`${sources.file}: ${(err as Error).message}`);
    }
  }
  if (sources.env !== undefined && sources.envPrefix !== undefined) {
    const names = new Set([`${sources.envPrefix}_CONFIG`]);
    for (const leaf of known.values()) {
      const name = envName(sources.envPrefix, leaf.path);
      names.add(name);
      const text = sources.env[name];
      if (text !== undefined) setPath(merged, leaf.path, parseText(text, leaf.schema));
    }
    // A misspelt variable must not be ignored silently: the setting it meant would not apply.
    // Kubernetes' service-link variables of a Service whose name matches the prefix are not ours.
    for (const name of Object.keys(sources.env)) {
      if (name.startsWith(`${sources.envPrefix}_`) && !names.has(name) && !SERVICE_LINK.test(name))
        problems.push(`unknown environment variable ${name}`);
    }
  }
  for (const [path, value] of Object.entries(sources.overrides ?? {})) {
    const leaf = known.get(path);
    if (leaf === undefined) {
      problems.push(`unknown option '${path}'`);
      continue;
    }
    setPath(merged, leaf.path, typeof value === 'string' ? parseText(value, leaf.schema) : value);
  }
  // Fill defaults of objects the file replaced partially.
  merged = Value.Default(schema, merged) as Record<string, unknown>;
  for (const error of Value.Errors(schema, merged)) {
    const path = error.path.replace(/^\//, '').replace(/\//g, '.') || '(root)';
    const source =
      sources.envPrefix !== undefined &&
      known.has(path) &&
      sources.env?.[envName(sources.envPrefix, path.split('.'))] !== undefined
        ? ` (from ${envName(sources.envPrefix, path.split('.'))})`
        : '';
    problems.push(`${path}: ${error.message}${source}`);
  }
  if (problems.length > 0) throw new ConfigError([...new Set(problems)]);
  return deepFreeze(merged as Static<S>);
}

/** The configuration as JSON with fields marked `secret` replaced, for logs. */
export function redact<S extends TObject>(schema: S, config: Static<S>): Record<string, unknown> {
  const out = JSON.parse(JSON.stringify(config)) as Record<string, unknown>;
  for (const leaf of leaves(schema)) {
    if ((leaf.schema as { secret?: boolean }).secret === true) {
      let node: Record<string, unknown> | undefined = out;
      for (const key of leaf.path.slice(0, -1))
        node = node?.[key] as Record<string, unknown> | undefined;
      const last = leaf.path.at(-1) as string;
      if (node !== undefined && node[last] !== undefined && node[last] !== '') node[last] = '***';
    }
  }
  return out;
}

/** Markdown table of every option: path, env variable, type, default, description. */
export function describeConfig(schema: TObject, envPrefix: string): string {
  const rows = leaves(schema).map((l) => {
    const s = l.schema as TSchema & {
      default?: unknown;
      description?: string;
      minimum?: number;
      maximum?: number;
    };
    const range =
      s.minimum !== undefined || s.maximum !== undefined
        ? ` (${s.minimum ?? ''}–${s.maximum ?? ''})`
        : '';
    return `| \`${l.path.join('.')}\` | \`${envName(envPrefix, l.path)}\` | ${String(s[Kind]).toLowerCase()}${range} | \`${JSON.stringify(s.default)}\` | ${s.description ?? ''} |`;
  });
  return [
    '| option | environment | type | default | description |',
    '|---|---|---|---|---|',
    ...rows,
  ].join('\n');
}

/** Parses `--a.b=value` and `--a.b value` flags into overrides; returns the remaining arguments. */
export function parseFlags(argv: readonly string[]): {
  overrides: Record<string, string>;
  rest: string[];
  configFile?: string;
} {
  const overrides: Record<string, string> = {};
  const rest: string[] = [];
  let configFile: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (!arg.startsWith('--')) {
      rest.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const key = eq >= 0 ? arg.slice(2, eq) : arg.slice(2);
    const value = eq >= 0 ? arg.slice(eq + 1) : argv[++i];
    if (value === undefined) {
      rest.push(arg);
      continue;
    }
    if (key === 'config') configFile = value;
    else overrides[key] = value;
  }
  return configFile === undefined ? { overrides, rest } : { overrides, rest, configFile };
}
