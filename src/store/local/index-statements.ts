/**
 * The SQL of the store index, prepared once per connection, and the
 * conversions between its rows and vmdn's types (digests are 32-byte BLOBs in
 * the database, hex strings everywhere else).
 */
import type Database from 'better-sqlite3';
import type { Digest } from '../digest.js';
import type { ImageRecord, ObjectStat } from '../types.js';

/** An index row: the object's sizes and, when packed, where its frame is (pack-file.ts). */
export interface IndexedObject extends ObjectStat {
  pack?: string;
  offset?: number;
}

/** A row of the leases table: the store lock (lease.ts). */
export type LeaseKind = 'write' | 'gc';

export interface LeaseRow {
  id: number;
  kind: LeaseKind;
  pid: number;
  /** The process's start time (Linux /proc), to tell a reused pid from its first owner; '' elsewhere. */
  procStart: string;
  started: string;
}

export type Statements = ReturnType<typeof prepareStatements>;

export function prepareStatements(d: Database.Database) {
  const live = `SELECT r.object_id AS id FROM manifest_refs r JOIN objects m ON m.id = r.manifest_id JOIN images i ON i.manifest = m.digest`;
  return {
    getObject: d.prepare<[Buffer], Row>('SELECT digest, size, stored_size, pack, pack_offset FROM objects WHERE digest = ?'),
    objectId: d.prepare<[Buffer], { id: number }>('SELECT id FROM objects WHERE digest = ?'),
    // a second copy (another process wrote it too) is as good as the first: the later row wins
    addObject: d.prepare(`INSERT INTO objects (digest, size, stored_size, pack, pack_offset) VALUES (?, ?, ?, ?, ?)
      ON CONFLICT (digest) DO UPDATE SET size = excluded.size, stored_size = excluded.stored_size, pack = excluded.pack, pack_offset = excluded.pack_offset`),
    movePacked: d.prepare<[string, number, Buffer, string]>('UPDATE objects SET pack = ?, pack_offset = ? WHERE digest = ? AND pack = ?'),
    packUse: d.prepare<[], { pack: string; n: number; bytes: number }>('SELECT pack, count(*) AS n, sum(stored_size) AS bytes FROM objects WHERE pack IS NOT NULL GROUP BY pack'),
    inPack: d.prepare<[string], Row>('SELECT digest, size, stored_size, pack, pack_offset FROM objects WHERE pack = ? ORDER BY pack_offset'),
    delObject: d.prepare('DELETE FROM objects WHERE digest = ?'),
    listObjects: d.prepare<[], Row>('SELECT digest, size, stored_size, pack, pack_offset FROM objects ORDER BY digest'),
    getImage: d.prepare<[string, string], Record<string, unknown>>('SELECT * FROM images WHERE name = ? AND tag = ?'),
    listImages: d.prepare<[], Record<string, unknown>>('SELECT * FROM images ORDER BY name, tag'),
    putImage: d.prepare(`INSERT OR REPLACE INTO images (name, tag, manifest, created, virtual_size, allocated_size, data_size, format)
      VALUES (@name, @tag, @manifest, @created, @virtualSize, @allocatedSize, @dataSize, @format)`),
    delImage: d.prepare('DELETE FROM images WHERE name = ? AND tag = ?'),
    // set-based: a point query costs ~15 us through better-sqlite3 here, tens of thousands of them add up to seconds
    addRefs: d.prepare<[number, string]>(`INSERT OR IGNORE INTO manifest_refs (manifest_id, object_id)
      SELECT ?, o.id FROM json_each(?) j JOIN objects o ON o.digest = unhex(j.value)`),
    // in input order, one row per digest (NULLs for one not indexed), and no digest read back: half statPlaces' cost for a whole image
    placesInOrder: d.prepare<[string], [string | null, number | null, number | null]>(`SELECT o.pack, o.pack_offset, o.stored_size
      FROM json_each(?) j LEFT JOIN objects o ON o.digest = unhex(j.value) ORDER BY j.key`).raw(),
    places: d.prepare<[string], Row>('SELECT o.digest, o.size, o.stored_size, o.pack, o.pack_offset FROM json_each(?) j JOIN objects o ON o.digest = unhex(j.value)'),
    statMany: d.prepare<[string], { digest: Buffer; size: number; stored_size: number }>('SELECT o.digest, o.size, o.stored_size FROM json_each(?) j JOIN objects o ON o.digest = unhex(j.value)'),
    // a store of a few objects (a first pull's cache holds the manifest and its trees) read whole: see SqliteIndex.fewObjects
    fewObjects: d.prepare<[number], { digest: Buffer; size: number; stored_size: number }>('SELECT digest, size, stored_size FROM objects LIMIT ?'),
    // statMany's sum without a row read back per object: ~20 ms instead of ~90 for a whole image's chunks
    storedBytes: d.prepare<[string], { n: number }>('SELECT total(o.stored_size) AS n FROM json_each(?) j JOIN objects o ON o.digest = unhex(j.value)'),
    hasRefs: d.prepare<[number], { n: number }>('SELECT count(*) AS n FROM manifest_refs WHERE manifest_id = ?'),
    liveDigests: d.prepare<[], { digest: Buffer }>(`SELECT o.digest FROM objects o WHERE o.id IN (${live}) UNION SELECT manifest FROM images
      UNION SELECT p.profile FROM profiles p JOIN images i ON i.manifest = p.manifest`),
    dropDeadRefs: d.prepare(`DELETE FROM manifest_refs WHERE manifest_id NOT IN (SELECT m.id FROM objects m JOIN images i ON i.manifest = m.digest)`),
    // bytes only this manifest references, among manifests that some image names
    uniqueStored: d.prepare<[number, number], { n: number | null }>(`SELECT sum(o.stored_size) AS n FROM manifest_refs r JOIN objects o ON o.id = r.object_id
      WHERE r.manifest_id = ? AND NOT EXISTS (SELECT 1 FROM manifest_refs r2 JOIN objects m ON m.id = r2.manifest_id JOIN images i ON i.manifest = m.digest
        WHERE r2.object_id = r.object_id AND r2.manifest_id <> ?)`),
    manifestStored: d.prepare<[number], { n: number | null }>(`SELECT sum(o.stored_size) AS n FROM manifest_refs r JOIN objects o ON o.id = r.object_id WHERE r.manifest_id = ?`),
    totals: d.prepare<[], { objects: number; size: number | null; stored: number | null }>('SELECT count(*) AS objects, sum(size) AS size, sum(stored_size) AS stored FROM objects'),
    // gc's re-check, inside its delete transaction: no named image needs the object (any more)
    isLive: d.prepare<[Buffer, Buffer, Buffer], { n: number }>(`SELECT EXISTS (SELECT 1 FROM images WHERE manifest = ?)
      OR EXISTS (SELECT 1 FROM objects o JOIN manifest_refs r ON r.object_id = o.id JOIN objects m ON m.id = r.manifest_id JOIN images i ON i.manifest = m.digest WHERE o.digest = ?)
      OR EXISTS (SELECT 1 FROM profiles p JOIN images i ON i.manifest = p.manifest WHERE p.profile = ?) AS n`),
    // the names whose image needs the object (as manifest, referenced object or boot profile): who may see it (net/server/visibility.ts)
    namesUsing: d.prepare<[Buffer, Buffer, Buffer], { name: string }>(`SELECT name FROM images WHERE manifest = ?
      UNION SELECT i.name FROM objects o JOIN manifest_refs r ON r.object_id = o.id JOIN objects m ON m.id = r.manifest_id JOIN images i ON i.manifest = m.digest WHERE o.digest = ?
      UNION SELECT i.name FROM profiles p JOIN images i ON i.manifest = p.manifest WHERE p.profile = ?`),
    getProfile: d.prepare<[Buffer], { profile: Buffer }>('SELECT profile FROM profiles WHERE manifest = ?'),
    putProfile: d.prepare<[Buffer, Buffer, string]>('INSERT OR REPLACE INTO profiles (manifest, profile, created) VALUES (?, ?, ?)'),
    dropUnnamedProfiles: d.prepare('DELETE FROM profiles WHERE manifest NOT IN (SELECT manifest FROM images)'),
    addLease: d.prepare<[string, number, string, string]>('INSERT INTO leases (kind, pid, proc_start, started) VALUES (?, ?, ?, ?)'),
    leasesBefore: d.prepare<[number], { id: number; kind: LeaseKind; pid: number; proc_start: string; started: string }>('SELECT id, kind, pid, proc_start, started FROM leases WHERE id < ? ORDER BY id'),
    dropLease: d.prepare<[number]>('DELETE FROM leases WHERE id = ?'),
  };
}

interface Row {
  digest: Buffer;
  size: number;
  stored_size: number;
  pack: string | null;
  pack_offset: number | null;
}

export function fromRow(r: Row): IndexedObject {
  const o: IndexedObject = { digest: r.digest.toString('hex'), size: r.size, storedSize: r.stored_size };
  if (r.pack !== null) {
    o.pack = r.pack;
    o.offset = r.pack_offset!;
  }
  return o;
}

export function key(digest: Digest): Buffer {
  return Buffer.from(digest, 'hex');
}

export function toImageRow(r: Record<string, unknown>): ImageRecord {
  return {
    name: r.name as string,
    tag: r.tag as string,
    manifest: (r.manifest as Buffer).toString('hex'),
    created: r.created as string,
    virtualSize: r.virtual_size as number,
    allocatedSize: r.allocated_size as number,
    dataSize: r.data_size as number,
    format: r.format as string,
  };
}
