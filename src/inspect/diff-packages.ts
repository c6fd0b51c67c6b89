/**
 * Packages layer of `vmdn diff`: added, removed, upgraded and downgraded
 * packages (keyed by name and architecture), versions ordered as dpkg does.
 */
import type { OsPackage } from '../os/inspect-os.js';

/** dpkg's character order in version parts: '~' before everything (even the end), letters before non-letters. */
function order(c: string | undefined): number {
  if (c === undefined) return 0;
  if (c === '~') return -1;
  if (/[0-9]/.test(c)) return 0;
  if (/[A-Za-z]/.test(c)) return c.charCodeAt(0);
  return c.charCodeAt(0) + 256;
}

function verrevcmp(a: string, b: string): number {
  let i = 0, j = 0;
  while (i < a.length || j < b.length) {
    let first = 0;
    while ((i < a.length && !/[0-9]/.test(a[i]!)) || (j < b.length && !/[0-9]/.test(b[j]!))) {
      const ac = order(i < a.length && !/[0-9]/.test(a[i]!) ? a[i] : undefined);
      const bc = order(j < b.length && !/[0-9]/.test(b[j]!) ? b[j] : undefined);
      if (ac !== bc) return ac - bc;
      i++; j++;
    }
    while (a[i] === '0') i++;
    while (b[j] === '0') j++;
    while (i < a.length && j < b.length && /[0-9]/.test(a[i]!) && /[0-9]/.test(b[j]!)) {
      if (!first) first = a.charCodeAt(i) - b.charCodeAt(j);
      i++; j++;
    }
    if (i < a.length && /[0-9]/.test(a[i]!)) return 1;
    if (j < b.length && /[0-9]/.test(b[j]!)) return -1;
    if (first) return first;
  }
  return 0;
}

function split(v: string): [number, string, string] {
  const c = v.indexOf(':');
  const epoch = c >= 0 ? Number(v.slice(0, c)) || 0 : 0;
  const rest = c >= 0 ? v.slice(c + 1) : v;
  const d = rest.lastIndexOf('-');
  return d >= 0 ? [epoch, rest.slice(0, d), rest.slice(d + 1)] : [epoch, rest, ''];
}

/** Negative, zero or positive like dpkg --compare-versions. */
export function compareDebVersions(a: string, b: string): number {
  const [ea, ua, ra] = split(a), [eb, ub, rb] = split(b);
  if (ea !== eb) return ea - eb;
  return verrevcmp(ua, ub) || verrevcmp(ra, rb);
}

export interface PackagesDiff {
  added: OsPackage[];
  removed: OsPackage[];
  upgraded: Array<{ name: string; arch: string; from: string; to: string }>;
  downgraded: Array<{ name: string; arch: string; from: string; to: string }>;
}

export function diffPackages(a: OsPackage[], b: OsPackage[]): PackagesDiff {
  const key = (p: OsPackage) => `${p.name}:${p.arch}`;
  const ma = new Map(a.map((p) => [key(p), p])), mb = new Map(b.map((p) => [key(p), p]));
  const out: PackagesDiff = { added: [], removed: [], upgraded: [], downgraded: [] };
  for (const [k, p] of ma) {
    const q = mb.get(k);
    if (!q) out.removed.push(p);
    else if (p.version !== q.version) {
      const c = compareDebVersions(p.version, q.version);
      (c > 0 ? out.downgraded : out.upgraded).push({ name: p.name, arch: p.arch, from: p.version, to: q.version });
    }
  }
  for (const [k, q] of mb) if (!ma.has(k)) out.added.push(q);
  const byName = (x: { name: string }, y: { name: string }) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0);
  for (const l of Object.values(out)) l.sort(byName);
  return out;
}
