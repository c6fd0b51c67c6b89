/** Start a real nginx (Debian package) on loopback as a caching reverse proxy in front of a vmdn server. */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';

export const hasNginx = () => spawnSync('nginx', ['-v']).status === 0;

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

/**
 * The configuration docs/http-api.md recommends: cache what the origin says
 * is cacheable, one upstream fetch for concurrent misses (proxy_cache_lock),
 * and go back to the origin when a client asks with Cache-Control: no-cache
 * (what vmdn clients do after a hash failure) or with a token (private images);
 * refuse object batches, which
 * it could not cache, so clients use per-object GETs.
 */
export function nginxConf(dir: string, port: number, upstream: string): string {
  const p = (s: string) => path.join(dir, s);
  return `${process.getuid?.() === 0 ? 'user root;\n' : ''}worker_processes 1;
pid ${p('nginx.pid')};
error_log ${p('error.log')} warn;
events { worker_connections 1024; }
http {
  access_log ${p('access.log')};
  client_body_temp_path ${p('tmp/body')};
  proxy_temp_path ${p('tmp/proxy')};
  fastcgi_temp_path ${p('tmp/fastcgi')};
  uwsgi_temp_path ${p('tmp/uwsgi')};
  scgi_temp_path ${p('tmp/scgi')};
  proxy_cache_path ${p('cache')} levels=1:2 keys_zone=vmdn:16m max_size=8g inactive=30d use_temp_path=off;
  map $http_cache_control $vmdn_refetch { ~*no-cache 1; default ""; }
  upstream origin { server ${new URL(upstream).host}; keepalive 32; }
  server {
    listen 127.0.0.1:${port};
    # batches are not cacheable: clients fall back to per-object GETs, which are
    location = /v1/objects/batch { return 404; }
    location = /v1/objects/pack  { return 404; }
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_cache vmdn;
      proxy_cache_lock on;
      proxy_cache_lock_timeout 60s;
      proxy_cache_bypass $vmdn_refetch $http_authorization;
      # a request with a token may see private images: its answer is never stored for others
      # (the origin marks those answers Cache-Control: private too, which nginx does not cache)
      proxy_no_cache $http_authorization;
      add_header X-Cache-Status $upstream_cache_status always;
    }
  }
}
`;
}

export interface Nginx {
  url: string;
  dir: string;
  stop(): Promise<void>;
}

/** nginx -p DIR -c DIR/nginx.conf -g 'daemon off;' serving `root` files or proxying `upstream`. */
export async function startNginx(dir: string, conf: (port: number) => string, o: { host?: string; wrap?: string[] } = {}): Promise<Nginx> {
  const host = o.host ?? '127.0.0.1';
  fs.mkdirSync(path.join(dir, 'tmp'), { recursive: true });
  const port = await freePort();
  fs.writeFileSync(path.join(dir, 'nginx.conf'), conf(port));
  const child: ChildProcess = spawn(o.wrap?.[0] ?? 'nginx', [...(o.wrap ? [...o.wrap.slice(1), 'nginx'] : []), '-p', dir, '-c', path.join(dir, 'nginx.conf'), '-g', 'daemon off;'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
  const url = `http://${host}:${port}`;
  for (let i = 0; ; i++) {
    if (child.exitCode !== null) throw new Error(`nginx exited ${child.exitCode}: ${stderr}${fs.readFileSync(path.join(dir, 'error.log'), 'utf8')}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, host, () => { s.destroy(); resolve(true); });
      s.on('error', () => resolve(false));
    });
    if (ok) break;
    if (i > 100) throw new Error(`nginx did not start: ${stderr}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    url,
    dir,
    stop: () => new Promise<void>((resolve) => {
      if (child.exitCode !== null) return resolve();
      child.once('exit', () => resolve());
      child.kill('SIGQUIT');
    }),
  };
}

/**
 * A static file server config (the plain HTTP download the benchmark compares against).
 * `accessLog`: a file of "BODY_BYTES URI" lines, to count what clients fetched.
 */
export function nginxStaticConf(dir: string, root: string, o: { host?: string; accessLog?: string } = {}): (port: number) => string {
  return (port) => `${process.getuid?.() === 0 ? 'user root;\n' : ''}worker_processes 1;
pid ${path.join(dir, 'nginx.pid')};
error_log ${path.join(dir, 'error.log')} warn;
events { worker_connections 256; }
http {
  ${o.accessLog ? `log_format bytes '$body_bytes_sent $request_uri';\n  access_log ${o.accessLog} bytes;` : 'access_log off;'}
  sendfile on;
  client_body_temp_path ${path.join(dir, 'tmp/body')};
  proxy_temp_path ${path.join(dir, 'tmp/proxy')};
  fastcgi_temp_path ${path.join(dir, 'tmp/fastcgi')};
  uwsgi_temp_path ${path.join(dir, 'tmp/uwsgi')};
  scgi_temp_path ${path.join(dir, 'tmp/scgi')};
  server { listen ${o.host ?? '127.0.0.1'}:${port}; root ${root}; }
}
`;
}

/**
 * The edge-group front docs/http-api.md recommends: object GETs (manifests
 * included) go to the edge that `hash $uri consistent` picks, so each object
 * lives on one edge of the group; names and everything else go round robin.
 * Batches and packs are refused (they name many objects, no one edge owns
 * them), so clients fall back to per-object GETs. `roundRobin` drops the hash
 * (what the test compares against: every edge then caches everything).
 */
export function nginxEdgeGroupConf(dir: string, port: number, edges: string[], o: { roundRobin?: boolean } = {}): string {
  const p = (s: string) => path.join(dir, s);
  const servers = edges.map((e) => `server ${new URL(e).host};`).join(' ');
  return `${process.getuid?.() === 0 ? 'user root;\n' : ''}worker_processes 1;
pid ${p('nginx.pid')};
error_log ${p('error.log')} warn;
events { worker_connections 1024; }
http {
  access_log ${p('access.log')};
  client_body_temp_path ${p('tmp/body')};
  proxy_temp_path ${p('tmp/proxy')};
  fastcgi_temp_path ${p('tmp/fastcgi')};
  uwsgi_temp_path ${p('tmp/uwsgi')};
  scgi_temp_path ${p('tmp/scgi')};
  upstream vmdn_edges_by_object { ${o.roundRobin ? '' : 'hash $uri consistent; '}${servers} keepalive 32; }
  upstream vmdn_edges { ${servers} keepalive 32; }
  server {
    listen 127.0.0.1:${port};
    location = /v1/objects/batch { return 404; }
    location = /v1/objects/pack  { return 404; }
    location /v1/objects/ {
      proxy_pass http://vmdn_edges_by_object;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }
    location / {
      proxy_pass http://vmdn_edges;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
`;
}

/**
 * Two or more `vmdn serve` on one store behind round robin (docs/http-api.md,
 * "An origin group"): no cache in front, uploads streamed through unbuffered.
 */
export function nginxOriginGroupConf(dir: string, port: number, origins: string[], o: { stickyUploads?: boolean } = {}): string {
  const p = (s: string) => path.join(dir, s);
  return `${process.getuid?.() === 0 ? 'user root;\n' : ''}worker_processes 1;
pid ${p('nginx.pid')};
error_log ${p('error.log')} warn;
events { worker_connections 1024; }
http {
  log_format up '$request_method $uri $upstream_addr $status';
  access_log ${p('access.log')} up;
  client_body_temp_path ${p('tmp/body')};
  proxy_temp_path ${p('tmp/proxy')};
  fastcgi_temp_path ${p('tmp/fastcgi')};
  uwsgi_temp_path ${p('tmp/uwsgi')};
  scgi_temp_path ${p('tmp/scgi')};
  # an s3:// store: one push's requests go to one origin (its uploads wait in that origin's open pack);
  # other requests hash a per-request random id, i.e. spread (an empty key would send them all to one)
  map "$request_method $uri" $vmdn_upload { default $request_id; "~^PUT " $remote_addr; "POST /v1/objects/missing" $remote_addr; }
  upstream vmdn_origins { ${o.stickyUploads ? 'hash $vmdn_upload consistent; ' : ''}${origins.map((u) => `server ${new URL(u).host};`).join(' ')} keepalive 32; }
  server {
    listen 127.0.0.1:${port};
    client_max_body_size 0;
    location / {
      proxy_pass http://vmdn_origins;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_request_buffering off;
      proxy_buffering off;
    }
  }
}
`;
}
