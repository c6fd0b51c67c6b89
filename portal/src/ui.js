// Shared bits of the pages: htm bound to preact, the router, formatting, a data loader.
import { h } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import htm from 'htm';

export const html = htm.bind(h);

// ---- routing: real links (<a href>), intercepted for same-page navigation; the server answers index.html for these paths
const listeners = new Set();
export function navigate(href, replace = false) {
  const before = location.pathname;
  const u = new URL(href, location.href);
  history[replace ? 'replaceState' : 'pushState'](null, '', href);
  for (const l of listeners) l();
  if (u.hash) return setTimeout(() => document.getElementById(u.hash.slice(1))?.scrollIntoView(), 50);
  window.scrollTo(0, 0);
  // a new page: keyboard and screen reader users start at its content, as after a full load
  if (u.pathname !== before) document.getElementById('main')?.focus({ preventScroll: true });
}
export function useLocation() {
  const [, set] = useState(0);
  useEffect(() => {
    const l = () => set((n) => n + 1);
    listeners.add(l);
    window.addEventListener('popstate', l);
    return () => {
      listeners.delete(l);
      window.removeEventListener('popstate', l);
    };
  }, []);
  return { path: location.pathname, query: new URLSearchParams(location.search) };
}
document.addEventListener('click', (e) => {
  const a = e.target.closest && e.target.closest('a[href]');
  if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  if (a.target || a.hasAttribute('download') || a.origin !== location.origin || a.pathname.startsWith('/v1/')) return;
  e.preventDefault();
  navigate(a.pathname + a.search + a.hash);
});

export const imageHref = (name, tag) => `/image/${name.split('/').map(encodeURIComponent).join('/')}${tag ? `?tag=${encodeURIComponent(tag)}` : ''}`;
export const nameFromPath = (path) => path.slice('/image/'.length).split('/').map(decodeURIComponent).join('/');

// ---- formatting
export function bytes(n) {
  if (n === null || n === undefined || !Number.isFinite(n)) return '?';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) (n /= 1024), i++;
  return `${i ? n.toFixed(n < 10 ? 1 : 0) : n} ${u[i]}`;
}
export function date(v) {
  if (!v) return '';
  if (typeof v === 'object' && 'sec' in v) v = v.sec;
  const d = new Date(typeof v === 'number' && v < 1e12 ? v * 1000 : v);
  return Number.isNaN(d.getTime()) ? String(v) : d.toISOString().slice(0, 16).replace('T', ' ');
}
/** Only http(s) links become hrefs: a publisher's "javascript:" stays text. */
export function safeUrl(u) {
  try {
    const p = new URL(String(u), location.origin);
    return p.protocol === 'http:' || p.protocol === 'https:' ? p.href : null;
  } catch {
    return null;
  }
}

/** Load `fn()` again whenever `deps` change: { data, error, loading }. */
export function useLoad(fn, deps) {
  const [s, set] = useState({ loading: true });
  useEffect(() => {
    let live = true;
    set((o) => ({ ...o, loading: true }));
    fn().then((data) => live && set({ data }), (error) => live && set({ error }));
    return () => {
      live = false;
    };
  }, deps);
  return s;
}

export function Status({ s, what }) {
  if (s.error) return html`<p class="error" role="alert">Could not load ${what}: ${s.error.message}</p>`;
  if (s.loading && !s.data) return html`<p class="muted" aria-live="polite">Loading ${what}…</p>`;
  return null;
}
