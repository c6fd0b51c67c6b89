/**
 * The VMDK text descriptor: `key = "value"` lines and extent lines
 * (`RW 2048 SPARSE "disk-s001.vmdk"`, `RW 2048 FLAT "disk-flat.vmdk" 0`).
 * Parsed strictly (an unknown line is an error, not skipped), and every
 * extent name must be a plain file name: the reader only ever opens files
 * beside the descriptor, never a path the descriptor makes up.
 */
import { VmdnError } from '../../errors.js';
import { DESCRIPTOR_MAGIC, MAX_CAPACITY_SECTORS, MAX_DESCRIPTOR_BYTES } from './layout.js';

export type ExtentType = 'SPARSE' | 'FLAT' | 'ZERO';

export interface ExtentLine {
  readonly type: ExtentType;
  readonly sectors: number;
  /** Plain file name (no directory part); null for ZERO extents. */
  readonly file: string | null;
  /** FLAT: where the extent's data starts in its file, in sectors. */
  readonly offset: number;
}

export interface Descriptor {
  readonly createType: string;
  readonly extents: readonly ExtentLine[];
  /** Sum of the extents' sectors. */
  readonly capacity: number;
}

/** createTypes whose extents this reader understands (delta disks, raw device mappings and seSparse are not). */
const CREATE_TYPES = new Set(['monolithicSparse', 'streamOptimized', 'monolithicFlat', 'twoGbMaxExtentSparse', 'twoGbMaxExtentFlat', 'vmfs']);
const MAX_EXTENTS = 8192;
const MAX_NAME = 255;
const NO_PARENT = 'ffffffff';

const EXTENT_RE = /^(RW|RDONLY|NOACCESS)\s+(\d{1,20})\s+([A-Z]+)(?:\s+"([^"]*)"(?:\s+(\d{1,20}))?)?$/;
const KEY_RE = /^([A-Za-z][A-Za-z0-9_.]*)\s*=\s*(?:"([^"]*)"|([^"\s]*))$/;

function fail(code: 'E_FORMAT' | 'E_UNSUPPORTED', path: string, msg: string, data: Record<string, unknown> = {}): never {
  throw new VmdnError(code, `${path}: ${msg}`, { path, format: 'vmdk', ...data });
}

/** True if `head` starts like a stand-alone descriptor file. */
export function isDescriptor(head: Uint8Array): boolean {
  return Buffer.from(head.subarray(0, DESCRIPTOR_MAGIC.length)).toString('latin1') === DESCRIPTOR_MAGIC;
}

/** A descriptor extent name must name a file in the descriptor's own directory. */
export function checkExtentName(name: string, path: string): void {
  const bad = name === '' ? 'is empty'
    : name.length > MAX_NAME ? `is longer than ${MAX_NAME} characters`
      : /[/\\]/.test(name) ? 'has a directory part (only files beside the descriptor are opened)'
        : name === '.' || name === '..' ? 'names a directory'
          : /[\0-\x1f\x7f]/.test(name) ? 'has control characters' : null;
  if (bad) fail('E_FORMAT', path, `extent file name ${JSON.stringify(name)} ${bad}`, { extent: name });
}

export function parseDescriptor(bytes: Uint8Array, path: string): Descriptor {
  if (bytes.length > MAX_DESCRIPTOR_BYTES) fail('E_FORMAT', path, `descriptor of ${bytes.length} bytes exceeds ${MAX_DESCRIPTOR_BYTES}`);
  // qemu pads descriptors with NUL bytes to a sector: the text ends at the first NUL.
  const nul = bytes.indexOf(0);
  const text = Buffer.from(nul < 0 ? bytes : bytes.subarray(0, nul)).toString('latin1');
  const keys = new Map<string, string>();
  const extents: ExtentLine[] = [];
  let capacity = 0;
  const lines = text.split('\n');
  for (let n = 0; n < lines.length; n++) {
    const line = lines[n].replace(/\r$/, '').trim();
    if (line === '' || line.startsWith('#')) continue;
    const where = { line: n + 1 };
    const ex = EXTENT_RE.exec(line);
    if (ex) {
      if (extents.length >= MAX_EXTENTS) fail('E_FORMAT', path, `more than ${MAX_EXTENTS} extents`, where);
      const e = extentLine(ex, path, n + 1);
      capacity += e.sectors;
      if (capacity > MAX_CAPACITY_SECTORS) fail('E_FORMAT', path, `extents add up to more than ${MAX_CAPACITY_SECTORS} sectors`, where);
      extents.push(e);
      continue;
    }
    const kv = KEY_RE.exec(line);
    if (!kv) fail('E_FORMAT', path, `descriptor line ${n + 1} is neither a setting nor an extent: ${JSON.stringify(line.slice(0, 80))}`, where);
    if (keys.has(kv[1]) && !kv[1].startsWith('ddb.')) fail('E_FORMAT', path, `descriptor sets ${kv[1]} twice`, where);
    keys.set(kv[1], kv[2] ?? kv[3]);
  }
  const version = keys.get('version');
  if (version === undefined) fail('E_FORMAT', path, 'descriptor has no version line');
  if (!/^[1-3]$/.test(version)) fail('E_UNSUPPORTED', path, `descriptor version ${JSON.stringify(version)} is not supported`);
  const createType = keys.get('createType');
  if (createType === undefined) fail('E_FORMAT', path, 'descriptor has no createType');
  if (!CREATE_TYPES.has(createType)) fail('E_UNSUPPORTED', path, `VMDK createType ${JSON.stringify(createType)} is not supported`, { createType });
  const parent = keys.get('parentCID');
  if ((parent !== undefined && parent.toLowerCase() !== NO_PARENT) || keys.has('parentFileNameHint')) {
    fail('E_UNSUPPORTED', path, 'VMDK delta disks (with a parent) are not supported; convert the chain to one image first');
  }
  if (extents.length === 0) fail('E_FORMAT', path, 'descriptor lists no extents');
  return { createType, extents, capacity };
}

function extentLine(m: RegExpExecArray, path: string, line: number): ExtentLine {
  const [, access, sectorsText, type, file, offsetText] = m;
  const where = { line };
  if (access === 'NOACCESS') fail('E_UNSUPPORTED', path, `NOACCESS extent on line ${line}`, where);
  const sectors = Number(sectorsText);
  if (!Number.isSafeInteger(sectors) || sectors <= 0 || sectors > MAX_CAPACITY_SECTORS) fail('E_FORMAT', path, `extent on line ${line} has ${sectorsText} sectors`, where);
  const offset = offsetText === undefined ? 0 : Number(offsetText);
  if (!Number.isSafeInteger(offset) || offset > MAX_CAPACITY_SECTORS) fail('E_FORMAT', path, `extent on line ${line} has offset ${offsetText}`, where);
  switch (type) {
    case 'ZERO':
      if (file !== undefined) fail('E_FORMAT', path, `ZERO extent on line ${line} names a file`, where);
      return { type, sectors, file: null, offset: 0 };
    case 'SPARSE':
    case 'FLAT':
    case 'VMFS': {
      if (file === undefined) fail('E_FORMAT', path, `${type} extent on line ${line} names no file`, where);
      if (type === 'SPARSE' && offsetText !== undefined) fail('E_FORMAT', path, `SPARSE extent on line ${line} has an offset`, where);
      if (type === 'FLAT' && offsetText === undefined) fail('E_FORMAT', path, `FLAT extent on line ${line} has no offset`, where);
      checkExtentName(file, path);
      return { type: type === 'SPARSE' ? 'SPARSE' : 'FLAT', sectors, file, offset };
    }
    default:
      return fail('E_UNSUPPORTED', path, `VMDK extent type ${type} (line ${line}) is not supported`, { ...where, type });
  }
}

/**
 * A descriptor for one sparse extent (the embedded descriptor of the files
 * vmdn writes). `name` must already be a safe file name; geometry as qemu
 * computes it (16 heads, 63 sectors, cylinders capped at 16383).
 */
export function buildDescriptor(createType: 'streamOptimized' | 'monolithicSparse', capacity: number, name: string, cid: number): string {
  const cylinders = Math.min(Math.floor(capacity / (16 * 63)), 16383);
  return [
    DESCRIPTOR_MAGIC, 'version=1', `CID=${cid.toString(16).padStart(8, '0')}`, `parentCID=${NO_PARENT}`, `createType="${createType}"`, '',
    '# Extent description', `RW ${capacity} SPARSE "${name}"`, '',
    '# The Disk Data Base', '#DDB', '',
    'ddb.virtualHWVersion = "4"', `ddb.geometry.cylinders = "${cylinders}"`, 'ddb.geometry.heads = "16"', 'ddb.geometry.sectors = "63"',
    'ddb.adapterType = "ide"', '',
  ].join('\n');
}
