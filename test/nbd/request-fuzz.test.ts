/**
 * Seeded mutation fuzzing of what an NBD server parses from a client: the
 * handshake's options and the requests after it, from a valid client stream
 * (options, reads, block status, writes into an overlay, flush, trim,
 * disconnect) mutated. An in-process server, so a crash shows as an error that
 * is not a VmdnError or a socket errno; after every batch a well-behaved
 * client must still read the right bytes.
 *   VMDN_FUZZ_SEED=<n>   reproduce a run (the seed is printed)
 *   VMDN_FUZZ_CASES=<n>  cases (default: a CI-sized count)
 */
import { it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { NbdServer } from '../../src/nbd/server.js';
import { BlockDevice } from '../../src/nbd/device.js';
import { Overlay } from '../../src/nbd/overlay.js';
import { VmdnError } from '../../src/errors.js';
import { MemDisk } from '../helpers/memdisk.js';
import { tmpDir } from '../helpers/tmp.js';
import { prng } from '../helpers/images.js';
import { mulberry32, seedFrom } from '../helpers/rng.js';
import { fuzzCases } from '../helpers/fuzz.js';
import { CMD, CMD_FLAG_DF, CMD_FLAG_REQ_ONE, goData, metaData, OPT, option, RawConn, request } from './raw-client.js';

const SEED = seedFrom('VMDN_FUZZ_SEED');
const MiB = 2 ** 20;
const image = prng(77, 8 * MiB);
let t: ReturnType<typeof tmpDir>;
let server: NbdServer;
let sock: string;
const crashes: string[] = [];

before(async () => {
  t = tmpDir('vmdn-nbd-fuzz-');
  sock = path.join(t.dir, 'nbd.sock');
  const overlay = await Overlay.open(path.join(t.dir, 'overlay'), image.length, 'a'.repeat(64));
  server = new NbdServer(new BlockDevice(new MemDisk(image), overlay), {
    name: 'img:1',
    matches: (n) => n === '' || n === 'img:1',
    onEvent: (e) => {
      const err = e.error as NodeJS.ErrnoException | undefined;
      if (e.event === 'error' && !(err instanceof VmdnError) && !(typeof err?.code === 'string' && /^E[A-Z]+$/.test(err.code))) crashes.push(String(err?.stack ?? e.why));
    },
  });
  await server.listen({ socket: sock });
});

after(async () => {
  await server?.close();
  t?.cleanup();
});

const VALID = Buffer.concat([
  Buffer.from([0, 0, 0, 3]),
  option(OPT.INFO, goData('img:1', [3, 1])),
  option(OPT.LIST),
  option(OPT.STRUCTURED_REPLY),
  option(OPT.LIST_META_CONTEXT, metaData('img:1', ['base:'])),
  option(OPT.SET_META_CONTEXT, metaData('', ['base:allocation', 'qemu:dirty-bitmap:x'])),
  option(OPT.GO, goData('', [3])),
  request(CMD.READ, 8192, 65536, { handle: 1, flags: CMD_FLAG_DF }),
  request(CMD.BLOCK_STATUS, 0, 8 * MiB, { handle: 8 }),
  request(CMD.BLOCK_STATUS, 4096, 8192, { handle: 9, flags: CMD_FLAG_REQ_ONE }),
  request(CMD.WRITE, 1000, 5000, { handle: 2, data: Buffer.alloc(5000, 0xee) }),
  request(CMD.FLUSH, 0, 0, { handle: 3 }),
  request(CMD.TRIM, 0, 8192, { handle: 4 }),
  request(CMD.WRITE_ZEROES, 40960, 8192, { handle: 5, flags: 1 }),
  request(CMD.READ, 0, 16384, { handle: 6 }),
  request(CMD.DISC, 0, 0, { handle: 7 }),
]);

function mutate(r: () => number, b: Buffer): Buffer {
  let out = Buffer.from(b);
  for (let i = 0, n = 1 + Math.floor(r() * 4); i < n; i++) {
    const at = Math.floor(r() * out.length);
    const k = r();
    if (k < 0.4) out[at] = Math.floor(r() * 256);
    else if (k < 0.6) {
      if (out.length >= 4) out.writeUInt32BE([0, 1, 0xffffffff, 0x7fffffff, 32 * MiB + 1, 8 * MiB][Math.floor(r() * 6)]!, Math.min(at, out.length - 4));
    } else if (k < 0.8) out = out.subarray(0, at);
    else out = Buffer.concat([out.subarray(0, at), out.subarray(at + Math.floor(r() * 64))]);
  }
  return out;
}

async function one(bytes: Buffer): Promise<number> {
  const c = await RawConn.connect(sock);
  c.send(bytes);
  c.sock.end();
  if (!(await c.closedWithin(10_000))) c.destroy();
  return c.received;
}

/** A well-behaved client gets the export and reads bytes past any written range. */
async function stillServes(): Promise<void> {
  const c = await RawConn.connect(sock);
  const { size } = await c.go('img:1');
  assert.equal(size, BigInt(image.length));
  const off = 4 * MiB + 123;
  c.send(request(CMD.READ, off, 4096, { handle: 42 }));
  const rep = (await c.reply(4096))!;
  assert.equal(rep.error, 0);
  c.destroy();
}

it('mutated client streams (options and requests) end in replies or a closed connection, never a crash', async () => {
  const cases = fuzzCases(200);
  console.log(`# NBD request fuzz: ${cases} cases, seed ${SEED} (VMDN_FUZZ_SEED=${SEED} to replay)`);
  const r = mulberry32(SEED);
  let replied = 0;
  for (let i = 0; i < cases; i += 10) {
    const batch = Array.from({ length: Math.min(10, cases - i) }, () => mutate(r, VALID));
    const got = await Promise.all(batch.map(one));
    replied += got.filter((n) => n > 18).length;
    assert.deepEqual(crashes, [], `cases ${i}-${i + batch.length - 1} (VMDN_FUZZ_SEED=${SEED})`);
    if (i % 500 === 0) await stillServes();
  }
  assert.ok(replied > cases / 3, `seed ${SEED}: only ${replied} of ${cases} mutants got past the greeting`);
  await stillServes();
});
