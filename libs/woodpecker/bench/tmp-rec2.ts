const N = 300000;
function mk(i: number, base: Record<string, string>): Record<string, string> {
  const p: Record<string, string> = { ...base, ['_tt']: (464000000000000000n + BigInt(i)).toString(), ['_vc']: 'bench', ['_wt']: '1', ['_t']: 'data' };
  return p;
}
function mk2(i: number): Record<string, string> {
  return { _tt: (464000000000000000n + BigInt(i)).toString(), _vc: 'bench', _wt: '1', _t: 'data' };
}
function utf8Length(s: string): number {
  const n = s.length;
  if (n > 64) return Buffer.byteLength(s, 'utf8');
  for (let i = 0; i < n; i++) if (s.charCodeAt(i) >= 0x80) return Buffer.byteLength(s, 'utf8');
  return n;
}
const time = (name: string, props: Record<string, string>[], f: (p: Record<string, string>) => number) => {
  let s = 0; const t = performance.now();
  for (let i = 0; i < N; i++) s += f(props[i]!);
  console.log(name, ((performance.now() - t) / N * 1e6).toFixed(0), 'ns', s > 0);
};
const forin = (p: Record<string, string>) => { let n = 0; for (const k in p) { if (!Object.hasOwn(p, k)) continue; n++; } return n; };
const forinLen = (p: Record<string, string>) => { let n = 0; for (const k in p) { if (!Object.hasOwn(p, k)) continue; n += utf8Length(k) + utf8Length(p[k]!); } return n; };
const keys = (p: Record<string, string>) => { let n = 0; for (const k of Object.keys(p)) { n += utf8Length(k) + utf8Length(p[k]!); } return n; };
for (let r = 0; r < 2; r++) {
  const a = Array.from({ length: N }, (_, i) => mk(i, {}));
  const b = Array.from({ length: N }, (_, i) => mk2(i));
  time('spread forin', a, forin); time('literal forin', b, forin);
  time('spread forinLen', a, forinLen); time('literal forinLen', b, forinLen);
  time('spread keys', a, keys); time('literal keys', b, keys);
}
