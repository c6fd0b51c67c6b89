/**
 * gc and verify for pack files (pack-file.ts). A pack only grows; what no row
 * points at any more (deleted objects, a crash's unindexed tail, a refused
 * download) stays until its pack is rewritten: a pack whose live bytes fall
 * under REPACK_BELOW of its size has its live entries copied into a new pack
 * (durable first), its rows moved in one transaction, and is then unlinked.
 * A reader that looked the object up before the move reads the old pack
 * through a descriptor it already had, or finds it gone and looks again
 * (local-store.ts). Packs a live writer may still append to (a .writing marker
 * with its pid) are left alone.
 */
import fsSync from 'node:fs';
import type { LocalStore } from './local-store.js';
import type { IndexedObject } from './sqlite-index.js';
import { ENTRY_HEADER, packPath, PACK_ID, scanPack, writingMarker } from './pack-file.js';
import { preadInto } from './pack-reader.js';
import { isProcessAlive } from '../../util/process.js';

/** Rewrite a pack once less than this share of it is live. */
export const REPACK_BELOW = 0.5;

/** The pack ids in `packsDir` (none if it does not exist yet). */
function packIds(packsDir: string): string[] {
  let names: string[];
  try {
    names = fsSync.readdirSync(packsDir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  return names.filter((n) => n.endsWith('.pack') && PACK_ID.test(n.slice(0, -5))).map((n) => n.slice(0, -5)).sort();
}

/** Whether a live process may still append to pack `id` (its marker names a running pid). */
function beingWritten(packsDir: string, id: string): boolean {
  let text: string;
  try {
    text = fsSync.readFileSync(writingMarker(packsDir, id), 'utf8');
  } catch {
    return false;
  }
  const pid = Number(text.trim());
  return Number.isInteger(pid) && pid > 0 && isProcessAlive(pid);
}

/** Pack bytes no row points at: entries without a row at their place, and torn tails. */
export function packGarbage(store: LocalStore, rows: Iterable<IndexedObject>): { bytes: number; packs: number } {
  const at = new Set<string>();
  for (const o of rows) if (o.pack !== undefined) at.add(`${o.pack}:${o.offset}:${o.digest}`);
  let bytes = 0;
  const ids = packIds(store.packsDir);
  for (const id of ids) {
    const scan = scanPack(packPath(store.packsDir, id));
    for (const e of scan.entries) if (!at.has(`${id}:${e.offset}:${e.digest}`)) bytes += ENTRY_HEADER + e.length;
    bytes += scan.size - scan.end;
  }
  return { bytes, packs: ids.length };
}

export interface RepackResult {
  repackedPacks: number;
  /** Packs unlinked (repacked ones included). */
  removedPacks: number;
  /** Pack bytes given back (garbage of rewritten and removed packs). */
  freedPackBytes: number;
}

/** Rewrite or remove packs that are mostly garbage. Run with the store held alone (gc's lease). */
export function repack(store: LocalStore, dryRun: boolean, use = store.index.packUse()): RepackResult {
  const res: RepackResult = { repackedPacks: 0, removedPacks: 0, freedPackBytes: 0 };
  const dir = store.packsDir;
  if (!dryRun) dropStaleMarkers(dir);
  for (const id of packIds(dir)) {
    if (beingWritten(dir, id)) continue;
    const file = packPath(dir, id);
    const size = fsSync.statSync(file).size;
    const u = use.get(id);
    const live = u ? u.bytes + u.objects * ENTRY_HEADER : 0;
    if (live >= size * REPACK_BELOW) continue;
    res.removedPacks++;
    res.freedPackBytes += size - live;
    if (u) res.repackedPacks++;
    if (dryRun) continue;
    if (u) {
      const moves: Array<{ digest: string; pack: string; offset: number }> = [];
      let buf = Buffer.allocUnsafe(1 << 20);
      for (const o of store.index.objectsInPack(id)) {
        if (o.storedSize > buf.length) buf = Buffer.allocUnsafe(o.storedSize);
        preadInto(file, o.offset!, o.storedSize, buf, 0, o.digest, store.dir);
        moves.push({ digest: o.digest, ...store.packs.append(o.digest, buf.subarray(0, o.storedSize)) });
      }
      // the copies durable before any row points at them, the rows moved before the old pack goes
      store.packs.sync();
      store.index.movePacked(id, moves);
    }
    fsSync.rmSync(file, { force: true });
  }
  return res;
}

/** Markers of writers that are gone (killed mid-import): their packs are finished. */
function dropStaleMarkers(dir: string): void {
  let names: string[];
  try {
    names = fsSync.readdirSync(dir);
  } catch {
    return;
  }
  for (const n of names) {
    if (!n.endsWith('.writing')) continue;
    const id = n.slice(0, -'.writing'.length);
    if (!beingWritten(dir, id)) fsSync.rmSync(writingMarker(dir, id), { force: true });
  }
}

/**
 * Move the objects kept as loose files (a layout-1 store's) into a pack: the
 * copies durable and their rows moved (index flush syncs the pack first)
 * before the files go, a batch at a time. A file that is gone is left for
 * verify to report. Run with the store held alone, after gc's deletes.
 */
export function packLoose(store: LocalStore): number {
  const loose = store.index.listObjects().filter((o) => o.pack === undefined);
  let n = 0;
  for (let i = 0; i < loose.length; i += 1024) {
    const moved: string[] = [];
    for (const o of loose.slice(i, i + 1024)) {
      let bytes: Buffer;
      try {
        bytes = fsSync.readFileSync(store.objectPath(o.digest));
      } catch {
        continue;
      }
      store.index.addObject({ ...o, storedSize: bytes.length, ...store.packs.append(o.digest, bytes) });
      moved.push(o.digest);
    }
    store.index.flush();
    for (const d of moved) fsSync.rmSync(store.objectPath(d), { force: true });
    n += moved.length;
  }
  return n;
}
