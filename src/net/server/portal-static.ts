/**
 * The portal's pages as static files (built by scripts/build-portal.mjs into
 * dist/portal/): the bundle and assets under /assets/ (hashed names, cached
 * for good), index.html for the page routes (the pages route in the browser).
 * Only GET/HEAD, only these paths: the API (/v1/...) and the server's own
 * endpoints never fall back to a page.
 */
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** dist/portal/, from dist/src/net/server/ (the modules) or dist/cli/ (the bundled CLI, scripts/build-cli.mjs). */
export const PORTAL_DIR = portalDir();

function portalDir(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const candidates = ['../../../portal', '../portal'].map((rel) => path.resolve(here, rel));
  return candidates.find((d) => fs.existsSync(path.join(d, 'index.html'))) ?? candidates[0]!;
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.map': 'application/json',
  '.txt': 'text/plain; charset=utf-8',
};

/** Paths the pages handle themselves (portal/src/router.js): everything else is a 404 here. */
export function isPageRoute(pathname: string): boolean {
  return pathname === '/' || pathname === '/publish' || /^\/image\/[^/]/.test(pathname);
}

const HEADERS = {
  'x-content-type-options': 'nosniff',
  // the pages load nothing from other sites, run no inline script and are never framed
  'content-security-policy': "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'",
  'referrer-policy': 'same-origin',
};

/** Serve a portal file or page; false when the path is none of them (the caller answers 404). */
export function servePortal(req: http.IncomingMessage, res: http.ServerResponse, pathname: string, dir = PORTAL_DIR): boolean {
  if (req.method !== 'GET' && req.method !== 'HEAD') return false;
  let file: string;
  let cache: string;
  const asset = /^\/assets\/([A-Za-z0-9._-]+)$/.exec(pathname);
  if (asset && !asset[1]!.startsWith('.')) {
    file = path.join(dir, 'assets', asset[1]!);
    // esbuild names carry a content hash (build-portal.mjs): a new build is a new name
    cache = /-[A-Z0-9]{8}\.\w+$/.test(asset[1]!) ? 'public, max-age=31536000, immutable' : 'no-cache';
  } else if (isPageRoute(pathname) || pathname === '/index.html') {
    file = path.join(dir, 'index.html');
    cache = 'no-cache';
  } else {
    return false;
  }
  let body: Buffer;
  try {
    body = fs.readFileSync(file);
  } catch {
    if (file.endsWith('index.html')) {
      res.writeHead(503, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' });
      res.end('the portal is not built: run npm run build\n');
      return true;
    }
    return false;
  }
  res.writeHead(200, {
    ...HEADERS,
    'content-type': TYPES[path.extname(file)] ?? 'application/octet-stream',
    'content-length': body.length,
    'cache-control': cache,
  });
  res.end(req.method === 'HEAD' ? undefined : body);
  return true;
}
