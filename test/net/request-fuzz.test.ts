/**
 * Seeded mutation fuzzing of the HTTP request bodies an origin parses: the
 * JSON of batch, pack and missing requests, image and profile names, and
 * uploaded (encoded) objects. Every mutant must get a 2xx or a 4xx answer
 * (503 for a busy pack), never a 5xx: that would be an unexpected exception
 * (E_INTERNAL) or a store left in doubt. The origin must keep serving.
 *   VMDN_FUZZ_SEED=<n>   reproduce a run (the seed is printed)
 *   VMDN_FUZZ_CASES=<n>  cases (default: a CI-sized count)
 */
import { it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { Origin } from '../../src/net/server/origin.js';
import { LocalStore } from '../../src/store/local/local-store.js';
import { tmpDir } from '../helpers/tmp.js';
import { prng } from '../helpers/images.js';
import { mulberry32, seedFrom } from '../helpers/rng.js';
import { fuzzCases } from '../helpers/fuzz.js';
import { mutateBytes, pick, TEXT_TOKENS } from '../helpers/mutate.js';

const SEED = seedFrom('VMDN_FUZZ_SEED');
const TOKEN = 'fuzz-token';
const TOKENS = [...TEXT_TOKENS, '"', '{', '}', '[', ']', ',', 'null', 'true', '[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[', '"digests"', '"refs"', '"manifest"', '"profile"', '\\u0000', '\\', '1e999', '-0'];

let t: ReturnType<typeof tmpDir>;
let origin: Origin;
const digests: string[] = [];
const encoded: Uint8Array[] = [];

before(async () => {
  t = tmpDir('vmdn-request-fuzz-');
  const store = await LocalStore.open(path.join(t.dir, 'origin'));
  for (let i = 0; i < 4; i++) {
    const d = (await store.put(prng(60 + i, 500 + i * 7000))).digest;
    digests.push(d);
    encoded.push(await store.getEncoded(d));
  }
  origin = new Origin(store, { token: TOKEN });
  await origin.listen();
});

after(async () => {
  await origin.close();
  await origin.store.close();
  t.cleanup();
});

/** The requests whose bodies are fuzzed: method, path, a valid body. */
function targets(): Array<{ method: string; path: string; body: Buffer }> {
  const json = (v: unknown) => Buffer.from(JSON.stringify(v));
  return [
    { method: 'POST', path: '/v1/objects/batch', body: json({ digests }) },
    { method: 'POST', path: '/v1/objects/pack', body: json({ digests: digests.slice(2), refs: digests.slice(0, 2) }) },
    { method: 'POST', path: '/v1/objects/missing', body: json({ digests: [...digests, 'f'.repeat(64)] }) },
    { method: 'PUT', path: '/v1/images/fuzz/x', body: json({ manifest: digests[0] }) },
    { method: 'PUT', path: `/v1/profiles/${digests[0]}`, body: json({ profile: digests[1] }) },
    // one upload (a mutated encoded object: the codec's decode and hash check, and how the route maps their errors)
    { method: 'PUT', path: `/v1/objects/${digests[0]}`, body: Buffer.from(encoded[0]!) },
  ];
}

it('an image or profile naming a stored object that is not a manifest is the uploader\'s error (400), not the store\'s (500)', async () => {
  // found by this fuzz target (seed 4166217845, case 246): E_MANIFEST went out as a 500
  for (const [p, body] of [['/v1/images/fuzz/blob', { manifest: digests[0] }], [`/v1/profiles/${digests[0]}`, { profile: digests[1] }]] as const) {
    const res = await fetch(`${origin.url}${p}`, { method: 'PUT', body: JSON.stringify(body), headers: { authorization: `Bearer ${TOKEN}` } });
    const json = (await res.json()) as { error: { code: string; message: string } };
    assert.equal(res.status, 400, `${p}: ${JSON.stringify(json)}`);
    assert.equal(json.error.code, 'E_USAGE');
    assert.match(json.error.message, /not a valid manifest/);
  }
});

it('a body that is JSON but not an object (null, a number, an array) is a 400, not a 500', async () => {
  // found by npm run fuzz (seed 2492106773, case 8604): POST /v1/objects/batch with "null" dereferenced it (E_INTERNAL, 500)
  for (const p of ['/v1/objects/batch', '/v1/objects/pack', '/v1/objects/missing']) {
    for (const body of ['null', '7', '[]', '"digests"']) {
      const res = await fetch(`${origin.url}${p}`, { method: 'POST', body, headers: { authorization: `Bearer ${TOKEN}` } });
      const json = (await res.json()) as { error: { code: string } };
      assert.equal(res.status, 400, `${p} ${body}: ${JSON.stringify(json)}`);
      assert.equal(json.error.code, 'E_USAGE');
    }
  }
});

it('mutated request bodies get a 2xx or 4xx answer (503 for a busy pack), never a 5xx; the origin keeps serving', async () => {
  const cases = fuzzCases(300);
  console.log(`# HTTP request body fuzz: ${cases} cases, seed ${SEED} (VMDN_FUZZ_SEED=${SEED} to replay)`);
  const r = mulberry32(SEED);
  const all = targets();
  const statuses = new Map<number, number>();
  const msByPath = new Map<string, number>();
  for (let i = 0; i < cases; i++) {
    const tgt = pick(r, all);
    const t0 = performance.now();
    const body = mutateBytes(r, tgt.body, TOKENS);
    const res = await fetch(`${origin.url}${tgt.path}`, { method: tgt.method, body: new Uint8Array(body), headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' } });
    const text = Buffer.from(await res.arrayBuffer());
    statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
    const key = tgt.path.replace(/[0-9a-f]{64}/, 'D');
    msByPath.set(key, (msByPath.get(key) ?? 0) + performance.now() - t0);
    const ok = res.status < 500 || (res.status === 503 && tgt.path.endsWith('/pack'));
    assert.ok(ok, `case ${i} (VMDN_FUZZ_SEED=${SEED}) ${tgt.method} ${tgt.path}: ${res.status} ${text.subarray(0, 500).toString()}\nbody: ${JSON.stringify(body.subarray(0, 500).toString('latin1'))}`);
  }
  console.log(`# statuses: ${JSON.stringify(Object.fromEntries(statuses))}; ms by path: ${JSON.stringify(Object.fromEntries([...msByPath].map(([k, v]) => [k, Math.round(v)])))}`);
  assert.ok([...statuses.keys()].some((s) => s >= 400), 'no mutant was refused: the mutations test nothing');
  // still serving, and the stored objects intact
  const res = await fetch(`${origin.url}/v1/objects/batch`, { method: 'POST', body: JSON.stringify({ digests }), headers: { 'content-type': 'application/json' } });
  assert.equal(res.status, 200);
  await res.arrayBuffer();
  for (const d of digests) assert.equal((await origin.store.get(d)).length > 0, true);
});
