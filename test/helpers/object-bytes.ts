/**
 * Where a local store keeps an object's encoded bytes (a stretch of a pack, or
 * a loose file of an older store), for tests that damage or lose one object on
 * disk. Damage is done in place (same length), so every other object stays as
 * it was.
 */
import fs from 'node:fs';
import type { LocalStore } from '../../src/store/local/local-store.js';
import { PackWriter } from '../../src/store/local/pack-writer.js';
import { closePacks } from '../../src/store/local/pack-reader.js';
import type { Digest } from '../../src/store/digest.js';

export interface ObjectBytes {
  path: string;
  offset: number;
  length: number;
  packed: boolean;
}

/** Where `digest`'s encoded bytes are (throws if the store does not index it). */
export function objectBytes(store: LocalStore, digest: Digest): ObjectBytes {
  const p = store.place(digest);
  if (!store.index.getObject(digest)) throw new Error(`object ${digest} is not in ${store.dir}`);
  if (p.packOffset === undefined) return { path: p.objPath, offset: 0, length: fs.statSync(p.objPath).size, packed: false };
  return { path: p.objPath, offset: p.packOffset, length: p.storedSize!, packed: true };
}

export function readObjectBytes(at: ObjectBytes): Buffer {
  const fd = fs.openSync(at.path, 'r');
  try {
    const b = Buffer.alloc(at.length);
    fs.readSync(fd, b, 0, at.length, at.offset);
    return b;
  } finally {
    fs.closeSync(fd);
  }
}

/** Overwrite the object's bytes in place (`bytes` cut or zero-padded to its length). */
export function writeObjectBytes(at: ObjectBytes, bytes: Uint8Array): void {
  const b = Buffer.alloc(at.length);
  Buffer.from(bytes.buffer, bytes.byteOffset, Math.min(bytes.length, at.length)).copy(b);
  const fd = fs.openSync(at.path, 'r+');
  try {
    fs.writeSync(fd, b, 0, b.length, at.offset);
  } finally {
    fs.closeSync(fd);
  }
}

/** Flip the bits of one byte of the object's encoded bytes (by default 5 from its end: inside the frame's data or checksum). */
export function flipObjectByte(store: LocalStore, digest: Digest, fromEnd = 5): ObjectBytes {
  const at = objectBytes(store, digest);
  const b = readObjectBytes(at);
  b[b.length - fromEnd]! ^= 0xff;
  writeObjectBytes(at, b);
  return at;
}

/**
 * Make one object missing, as a deleted loose file was: a packed one is first
 * moved into a pack of its own (the store's index updated), which is then
 * unlinked; other objects are untouched.
 */
export async function loseObject(store: LocalStore, digest: Digest): Promise<void> {
  const at = objectBytes(store, digest);
  if (!at.packed) return fs.rmSync(at.path);
  const own = isolate(store, digest, at);
  closePacks();
  fs.rmSync(own);
}

/** Move a packed object into a pack of its own; returns the new pack's path. */
function isolate(store: LocalStore, digest: Digest, at: ObjectBytes): string {
  const w = new PackWriter(store.packsDir);
  const place = w.append(digest, readObjectBytes(at));
  w.close();
  const row = store.index.getObject(digest)!;
  store.index.addObject({ ...row, ...place });
  store.index.flush();
  return store.place(digest).objPath;
}

/**
 * Flip one byte of every object the store at `dir` indexes (a store whose every read must
 * fail its hash check), except the manifests of the images named in `spare` ("name:tag"),
 * so a server can still open those images and meet the damage on its reads.
 */
export async function damageEveryObject(dir: string, fromEnd = 1, spare: string[] = []): Promise<number> {
  const { LocalStore } = await import('../../src/store/local/local-store.js');
  const store = await LocalStore.open(dir, { workers: 0 });
  try {
    const spared = new Set(spare.map((ref) => store.index.getImage(...(ref.split(':') as [string, string]))?.manifest));
    let n = 0;
    for await (const o of store.list()) if (!spared.has(o.digest)) (flipObjectByte(store, o.digest, fromEnd), n++);
    return n;
  } finally {
    await store.close();
  }
}

/** Flip one byte of one object (the first the index lists) of the store at `dir`; returns its digest. */
export async function damageOneObject(dir: string, fromEnd = 3): Promise<Digest> {
  const { LocalStore } = await import('../../src/store/local/local-store.js');
  const store = await LocalStore.open(dir, { workers: 0 });
  try {
    for await (const o of store.list()) {
      flipObjectByte(store, o.digest, fromEnd);
      return o.digest;
    }
    throw new Error(`no object in ${dir}`);
  } finally {
    await store.close();
  }
}
