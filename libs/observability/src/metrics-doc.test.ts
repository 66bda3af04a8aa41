import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { METRICS, prometheusName } from './metric-names.js';
import { SPANS } from './span-names.js';

// The reference operators read; it must list every metric and span the code can emit.
const doc = readFileSync(new URL('../../../docs/metrics.md', import.meta.url), 'utf8');

describe('docs/metrics.md', () => {
  it.each(Object.values(METRICS).map((m) => [m.name, m] as const))(
    'documents metric %s with its Prometheus name and unit',
    (name, def) => {
      const row = doc.split('\n').find((line) => line.includes(`\`${prometheusName(def)}\``));
      expect(row, `no row for ${prometheusName(def)}`).toBeDefined();
      expect(row).toContain(`\`${name}\``);
      expect(row).toContain(`\`${def.unit}\``);
    },
  );

  it.each(Object.values(SPANS).map((s) => [s.name] as const))('documents span %s', (name) => {
    expect(doc).toContain(`\`${name}\``);
  });

  it('has unique metric names', () => {
    const names = Object.values(METRICS).map((m) => m.name);
    expect(new Set(names).size).toBe(names.length);
  });
});
