(globalThis as any).fast = new Function("o", "return %HasFastProperties(o)");
import { encodeRecordHead } from '../src/format/codec.js';
const payload = Buffer.alloc(1024, 3);
const N = 300000;
function mk(i: number, base: Record<string, string>): Record<string, string> {
  const p: Record<string, string> = { ...base, ['_tt']: (464000000000000000n + BigInt(i)).toString(), ['_vc']: 'bench', ['_wt']: '1', ['_t']: 'data' };
  if (i % 64 === 0) p['_ps'] = 'abcdef0123456789:' + i + '+64';
  return p;
}
const empty = {};
for (let round = 0; round < 3; round++) {
  const props = Array.from({ length: N }, (_, i) => mk(i, empty));
  let t = performance.now();
  let s = 0;
  for (let i = 0; i < N; i++) s += encodeRecordHead({ payload, properties: props[i] }).length;
  const a = (performance.now() - t) / N * 1e6;
  t = performance.now();
  for (let i = 0; i < N; i++) s += encodeRecordHead({ payload }).length;
  const b = (performance.now() - t) / N * 1e6;
  console.log('with props ns', a.toFixed(0), 'without', b.toFixed(0), s > 0, (globalThis as any).fast(props[1]));
}
