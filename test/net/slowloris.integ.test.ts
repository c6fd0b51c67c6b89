/**
 * Slow clients at a real `vmdn serve` (src/net/server/limits.ts): a socket that
 * sends its headers a byte at a time, and one whose body never ends, are
 * dropped once the headers / request timeout has passed, while another client
 * is answered at once throughout. The timeouts are shortened through the
 * environment so this takes seconds (the defaults are 15 s and 300 s).
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import http from 'node:http';
import { LocalStore } from '../../src/store/local/local-store.js';
import { tmpDir } from '../helpers/tmp.js';
import { startServe, type Served } from '../helpers/serve.js';

const HEADERS_MS = 1000;
const REQUEST_MS = 2000;

/** Connect, send `first`, then one byte of `drip` every 200 ms; resolves with ms until the server closed the socket, and what it answered. */
function slowClient(port: number, first: string, drip: string): Promise<{ ms: number; answer: string }> {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const s = net.connect(port, '127.0.0.1', () => s.write(first));
    let answer = '';
    let i = 0;
    const timer = setInterval(() => {
      if (!s.destroyed && s.writable) s.write(drip[i++ % drip.length]!);
    }, 200);
    s.on('data', (b) => (answer += b.toString('latin1')));
    s.on('error', () => {}); // a reset is a close too
    s.on('close', () => {
      clearInterval(timer);
      resolve({ ms: Date.now() - t0, answer });
    });
    // the old defaults held such sockets 60-300 s: give up well before
    setTimeout(() => {
      clearInterval(timer);
      s.destroy();
      reject(new Error(`slow client still connected after 10 s (answer so far: ${JSON.stringify(answer)})`));
    }, 10_000).unref();
  });
}

/** ms for a GET /health on its own connection. */
function health(url: string): Promise<number> {
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    http.get(`${url}/health`, { agent: false }, (res) => {
      res.resume();
      res.on('end', () => (res.statusCode === 200 ? resolve(Date.now() - t0) : reject(new Error(`HTTP ${res.statusCode}`))));
    }).on('error', reject);
  });
}

describe('slow clients (slowloris) at vmdn serve', () => {
  const t = tmpDir('vmdn-slowloris-');
  let srv: Served;
  before(async () => {
    await (await LocalStore.open(`${t.dir}/store`)).close();
    srv = await startServe(`${t.dir}/store`, { env: { ...process.env, VMDN_HTTP_HEADERS_TIMEOUT_MS: String(HEADERS_MS), VMDN_HTTP_REQUEST_TIMEOUT_MS: String(REQUEST_MS) } });
  });
  after(async () => {
    await srv?.stop();
    t.cleanup();
  });

  it('drops a socket dribbling its headers after the headers timeout, and one whose body never ends after the request timeout, answering others meanwhile', async () => {
    const headers = slowClient(srv.port, 'GET /health HTTP/1.1\r\nHost: x\r\n', 'X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n');
    const body = slowClient(srv.port, 'POST /v1/objects/batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n[', ' ');
    // while both are held: other clients are answered promptly
    const waits: number[] = [];
    for (let i = 0; i < 5; i++) {
      waits.push(await health(srv.url));
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.ok(Math.max(...waits) < 1000, `health answered in ${waits.join(', ')} ms`);
    const [h, b] = await Promise.all([headers, body]);
    // dropped after its timeout (not before), within a few sweeps of it
    assert.ok(h.ms >= HEADERS_MS - 50 && h.ms < HEADERS_MS + 3000, `header dribbler dropped after ${h.ms} ms`);
    assert.ok(b.ms >= REQUEST_MS - 50 && b.ms < REQUEST_MS + 3000, `endless body dropped after ${b.ms} ms`);
    assert.match(h.answer, /^$|^HTTP\/1\.1 408/);
    assert.match(b.answer, /^$|^HTTP\/1\.1 408/);
    assert.equal(await health(srv.url) < 1000, true, 'the origin still answers afterwards');
  });
});
