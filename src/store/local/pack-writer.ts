/**
 * The appending half of pack files (pack-file.ts), on the main thread: each
 * store instance appends to a pack of its own (random id, created exclusively),
 * so two processes never write one file. append() writes an entry at once
 * (page cache; readers of this process can read it right away) and returns its
 * place; sync() makes everything appended so far durable. The index inserts an
 * object's row only after the sync that covers it (sqlite-index.ts calls sync()
 * before each commit of object rows): a row never points at bytes a crash can
 * lose, and bytes no row points at are garbage that gc reclaims.
 *
 * While a pack may still grow, a marker file <id>.writing holds the writer's
 * pid: gc leaves that pack alone while the pid lives.
 */
import fsSync from 'node:fs';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';
import { ENTRY_HEADER, entryHeader, packPath, PACK_ROTATE_BYTES, writeEntryHeader, writingMarker } from './pack-file.js';
import { VmdnError } from '../../errors.js';

interface OpenPack {
  id: string;
  fd: number;
  size: number;
  /** Bytes appended since the last fdatasync (or since syncBehind started one). */
  dirty: boolean;
  /** syncBehind's fdatasyncs still running on this pack: its fd stays open, and sync() syncs it itself. */
  syncing: number;
}

export class PackWriter {
  private current: OpenPack | undefined;
  /** Rotated packs not yet synced (closed by the next sync). */
  private retired: OpenPack[] = [];
  private dirSynced = true;
  /** Packs created so far: a directory fsync started before the latest one does not cover it. */
  private created = 0;

  constructor(readonly packsDir: string, private readonly rotateBytes = PACK_ROTATE_BYTES) {}

  /** Append one object's entry; returns where its frame is. Synchronous: the caller indexes it next. */
  append(digest: string, frame: Uint8Array): { pack: string; offset: number } {
    let p = this.current;
    if (p && p.size + ENTRY_HEADER + frame.length > this.rotateBytes && p.size > 0) {
      this.retire(p);
      p = undefined;
    }
    p ??= this.current = this.create();
    const at = p.size;
    // one syscall per entry: header and frame together
    let n: number;
    try {
      n = fsSync.writevSync(p.fd, [entryHeader(digest, frame.length), frame], at);
    } catch (err) {
      this.retire(p);
      throw err;
    }
    if (n !== ENTRY_HEADER + frame.length) {
      // a short write (full disk): nothing points at it, and nothing is appended after it (a
      // scan stops at a torn entry): the next object starts a new pack
      this.retire(p);
      throw new VmdnError('E_IO', `short write to pack ${p.id}`, { pack: p.id });
    }
    p.size += n;
    p.dirty = true;
    return { pack: p.id, offset: at + ENTRY_HEADER };
  }

  /**
   * append() for many objects: one writev per run that fits the current pack
   * (a pull's group of a few dozen), not a syscall and a header buffer each.
   * Returns each object's place, in order. A failure may leave some entries
   * written: garbage, as for append (no row points at them).
   */
  appendMany(entries: ReadonlyArray<{ digest: string; frame: Uint8Array }>): Array<{ pack: string; offset: number }> {
    const out: Array<{ pack: string; offset: number }> = [];
    let i = 0;
    while (i < entries.length) {
      let p = this.current;
      const first = ENTRY_HEADER + entries[i]!.frame.length;
      if (p && p.size + first > this.rotateBytes && p.size > 0) {
        this.retire(p);
        p = undefined;
      }
      p ??= this.current = this.create();
      // this run: what fits before the pack rotates (at least one entry), within IOV_MAX
      let end = i;
      let bytes = 0;
      while (end < entries.length && end - i < MAX_RUN && (end === i || p.size + bytes + ENTRY_HEADER + entries[end]!.frame.length <= this.rotateBytes)) {
        bytes += ENTRY_HEADER + entries[end]!.frame.length;
        end++;
      }
      const heads = Buffer.alloc(ENTRY_HEADER * (end - i));
      const iov: Uint8Array[] = [];
      const at = p.size;
      let off = at;
      for (let k = i; k < end; k++) {
        const h = heads.subarray(ENTRY_HEADER * (k - i), ENTRY_HEADER * (k - i + 1));
        writeEntryHeader(h, entries[k]!.digest, entries[k]!.frame.length);
        iov.push(h, entries[k]!.frame);
        out.push({ pack: p.id, offset: off + ENTRY_HEADER });
        off += ENTRY_HEADER + entries[k]!.frame.length;
      }
      let n: number;
      try {
        n = fsSync.writevSync(p.fd, iov, at);
      } catch (err) {
        this.retire(p);
        throw err;
      }
      if (n !== bytes) {
        this.retire(p);
        throw new VmdnError('E_IO', `short write to pack ${p.id}`, { pack: p.id });
      }
      p.size += n;
      p.dirty = true;
      i = end;
    }
    return out;
  }

  /** Make every appended entry durable (fdatasync; the packs directory too when a pack was created). */
  sync(): void {
    for (const p of this.open()) {
      // a syncBehind's fdatasync on it may not have finished: this one must
      if (p.dirty || p.syncing) fsSync.fdatasyncSync(p.fd);
      p.dirty = false;
    }
    this.syncDir();
    this.reapRetired();
  }

  /**
   * sync() off the event loop: every entry appended before the call is durable
   * once it resolves. The fdatasyncs run in libuv's thread pool: a pull's main
   * thread, which reads the sockets, spent a third of its time blocked in them
   * (~10 ms each, every ROW_DELAY_MS). The directory's fsync, once per new
   * pack, runs there too: on ext4 it commits the journal, which waits for other
   * files' data (the pull's output), and blocked the main thread for ~0.1 s
   * under load.
   */
  async syncBehind(): Promise<void> {
    const packs = this.open().filter((p) => p.dirty);
    for (const p of packs) {
      p.dirty = false;
      p.syncing++;
    }
    try {
      await Promise.all(packs.map(async (p) => {
        try {
          await fdatasync(p.fd);
        } catch (err) {
          p.dirty = true; // not durable: the next sync tries again
          throw err;
        }
      }));
      await this.syncDirBehind();
    } finally {
      for (const p of packs) p.syncing--;
      this.reapRetired();
    }
  }

  private open(): OpenPack[] {
    return [...this.retired, ...(this.current ? [this.current] : [])];
  }

  private syncDir(): void {
    if (this.dirSynced) return;
    const d = fsSync.openSync(this.packsDir, 'r');
    try {
      fsSync.fsyncSync(d);
    } finally {
      fsSync.closeSync(d);
    }
    this.dirSynced = true;
  }

  private async syncDirBehind(): Promise<void> {
    if (this.dirSynced) return;
    const seen = this.created;
    const d = await open(this.packsDir, 'r');
    try {
      await fsync(d);
    } finally {
      await close(d);
    }
    // a pack created meanwhile is not covered: the next sync syncs the directory again
    if (seen === this.created) this.dirSynced = true;
  }

  /** Close rotated packs that are durable and that no fdatasync uses any more. */
  private reapRetired(): void {
    const keep: OpenPack[] = [];
    for (const p of this.retired) {
      if (p.dirty || p.syncing) keep.push(p);
      else this.finish(p);
    }
    this.retired = keep;
  }

  /** Sync, then let go of the open pack (its marker goes: gc may repack it from now on). */
  close(): void {
    try {
      this.sync();
    } finally {
      // (LocalStore.close waits for the index's syncBehind first: nothing syncs these any more)
      for (const p of this.open()) this.finish(p);
      this.current = undefined;
      this.retired = [];
    }
  }

  private create(): OpenPack {
    fsSync.mkdirSync(this.packsDir, { recursive: true });
    const id = randomBytes(8).toString('hex');
    // the marker first: gc must never see this pack without it
    fsSync.writeFileSync(writingMarker(this.packsDir, id), `${process.pid}\n`, { flag: 'wx' });
    const fd = fsSync.openSync(packPath(this.packsDir, id), 'wx');
    this.dirSynced = false;
    this.created++;
    return { id, fd, size: 0, dirty: false, syncing: 0 };
  }

  private retire(p: OpenPack): void {
    this.retired.push(p);
    if (this.current === p) this.current = undefined;
  }

  private finish(p: OpenPack): void {
    fsSync.closeSync(p.fd);
    fsSync.rmSync(writingMarker(this.packsDir, p.id), { force: true });
  }
}

const fdatasync = promisify(fsSync.fdatasync);
const fsync = promisify(fsSync.fsync);
const open = promisify(fsSync.open);
const close = promisify(fsSync.close);
/** Entries per writev: two buffers each, within Linux's IOV_MAX (1024). */
const MAX_RUN = 256;
