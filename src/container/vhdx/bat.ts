/**
 * The VHDX block allocation table: payload block entries with a sector bitmap
 * entry after every `chunkRatio` of them. Checked here once: states known
 * (PARTIALLY_PRESENT and bitmaps only in differencing disks), every present
 * block 1 MiB aligned, inside the file, clear of the header section, log,
 * metadata and BAT regions and of every other block.
 */
import { fail, overlaps, type Region, type VhdxMeta } from './header.js';
import type { FileView } from './log.js';
import { PAYLOAD, SB_PRESENT, SECTOR_BITMAP_SIZE, MAX_BAT_ENTRIES, HEADER_SECTION, MiB, chunkRatio, batEntries } from './layout.js';

export interface Bat {
  readonly blocks: number;
  readonly ratio: number;
  /** Per payload block: its state (PAYLOAD.*) and file offset (-1 unless present). */
  readonly state: Uint8Array;
  readonly offset: Float64Array;
  /** Per chunk: the file offset of its sector bitmap, -1 if none. */
  readonly bitmap: Float64Array;
}

const PAYLOAD_STATES = new Set<number>(Object.values(PAYLOAD));

export async function parseBat(view: FileView, meta: VhdxMeta, batRegion: Region, reserved: Region[]): Promise<Bat> {
  const path = view.path;
  const bs = meta.blockSize;
  const blocks = Math.ceil(meta.virtualSize / bs);
  const ratio = chunkRatio(bs, meta.logicalSector);
  const n = batEntries(meta.virtualSize, bs, meta.logicalSector, meta.hasParent);
  if (n > MAX_BAT_ENTRIES) fail('E_UNSUPPORTED', path, `BAT of ${n} entries exceeds ${MAX_BAT_ENTRIES}`, { field: 'bat' });
  if (n * 8 > batRegion.length) fail('E_FORMAT', path, `BAT region of ${batRegion.length} bytes cannot hold ${n} entries`, { field: 'bat' });
  const raw = await view.read(batRegion.offset, n * 8);
  const state = new Uint8Array(blocks);
  const offset = new Float64Array(blocks).fill(-1);
  const bitmap = new Float64Array(Math.ceil(blocks / ratio)).fill(-1);
  const used: Array<[number, number]> = [];
  const place = (what: string, at: number, len: number): void => {
    const r = { offset: at, length: len };
    if (at < HEADER_SECTION) fail('E_FORMAT', path, `${what} at ${at} lies in the header section`, { field: 'bat' });
    if (at + len > view.size) fail('E_TRUNCATED', path, `${what} (${at}+${len}) lies past end of file (${view.size})`, { field: 'bat' });
    for (const x of reserved) if (overlaps(r, x)) fail('E_FORMAT', path, `${what} at ${at} overlaps the log, metadata or BAT`, { field: 'bat' });
    used.push([at, len]);
  };
  for (let i = 0; i < n; i++) {
    const e = raw.readBigUInt64LE(i * 8);
    const s = Number(e & 7n);
    const at = Number(e >> 20n) * MiB;
    const isBitmap = (i + 1) % (ratio + 1) === 0;
    if (isBitmap) {
      if (s !== 0 && s !== SB_PRESENT) fail('E_FORMAT', path, `sector bitmap entry ${i} has state ${s}`, { field: 'bat' });
      if (s === SB_PRESENT && !meta.hasParent) fail('E_FORMAT', path, `sector bitmap entry ${i} is present in a disk without parent`, { field: 'bat' });
      if (s === SB_PRESENT) {
        place(`sector bitmap ${i}`, at, SECTOR_BITMAP_SIZE);
        bitmap[(i + 1) / (ratio + 1) - 1] = at;
      }
      continue;
    }
    const b = i - Math.floor(i / (ratio + 1));
    if (b >= blocks) {
      if (s !== 0) fail('E_FORMAT', path, `BAT entry ${i} lies past the disk and is not empty`, { field: 'bat' });
      continue;
    }
    if (!PAYLOAD_STATES.has(s)) fail('E_FORMAT', path, `BAT entry ${i} has unknown state ${s}`, { field: 'bat', block: b });
    if (s === PAYLOAD.PARTIALLY_PRESENT && !meta.hasParent) fail('E_FORMAT', path, `block ${b} is partially present in a disk without parent`, { field: 'bat', block: b });
    state[b] = s;
    if (s === PAYLOAD.FULLY_PRESENT || s === PAYLOAD.PARTIALLY_PRESENT) {
      place(`block ${b}`, at, bs);
      offset[b] = at;
    }
  }
  for (let b = 0; b < blocks; b++) {
    if (state[b] === PAYLOAD.PARTIALLY_PRESENT && bitmap[Math.floor(b / ratio)] < 0) {
      fail('E_FORMAT', path, `block ${b} is partially present but its chunk has no sector bitmap`, { field: 'bat', block: b });
    }
  }
  used.sort((a, b) => a[0] - b[0]);
  for (let i = 1; i < used.length; i++) {
    if (used[i][0] < used[i - 1][0] + used[i - 1][1]) fail('E_FORMAT', path, `two BAT entries share the file region at ${used[i][0]}`, { field: 'bat' });
  }
  return { blocks, ratio, state, offset, bitmap };
}
