/**
 * NBD_OPT_LIST_META_CONTEXT / NBD_OPT_SET_META_CONTEXT: which metadata
 * contexts a query names. We have one, `base:allocation` (holes vs data, for
 * NBD_CMD_BLOCK_STATUS); other namespaces match nothing, as the protocol
 * asks. Every length and count is checked against the option's data before
 * it is used.
 */
import { LIMITS, MAX_NAME, META_BASE_ALLOCATION, META_BASE_ALLOCATION_ID, REP, decodeName } from './protocol.js';

export type MetaContextAnswer = { contexts: Buffer[] } | { error: number; message: string };

/** The NBD_REP_META_CONTEXT payload for base:allocation: u32 id, name. */
function allocationContext(): Buffer {
  const name = Buffer.from(META_BASE_ALLOCATION);
  const b = Buffer.alloc(4 + name.length);
  b.writeUInt32BE(META_BASE_ALLOCATION_ID, 0);
  name.copy(b, 4);
  return b;
}

/** Option data: u32 export name length, name, u32 query count, then each query as u32 length and string. */
export function metaContextOption(d: Buffer, set: boolean, matches: (name: string) => boolean): MetaContextAnswer {
  const invalid = (message: string): MetaContextAnswer => ({ error: REP.ERR_INVALID, message });
  if (d.length < 8) return invalid('option data too short');
  const nameLen = d.readUInt32BE(0);
  if (nameLen > MAX_NAME || 4 + nameLen + 4 > d.length) return invalid('bad export name length');
  const name = decodeName(d.subarray(4, 4 + nameLen));
  if (name === null) return invalid('export name is not valid UTF-8 without NUL');
  const count = d.readUInt32BE(4 + nameLen);
  // each query takes at least its 4-byte length
  if (count > LIMITS.maxMetaQueries || count * 4 > d.length - 8 - nameLen) return { error: REP.ERR_TOO_BIG, message: `${count} queries do not fit` };
  const queries: string[] = [];
  let at = 8 + nameLen;
  for (let i = 0; i < count; i++) {
    if (at + 4 > d.length) return invalid('query length past the option data');
    const len = d.readUInt32BE(at);
    if (len > MAX_NAME || at + 4 + len > d.length) return invalid(`query ${i} length ${len} past the option data`);
    const q = decodeName(d.subarray(at + 4, at + 4 + len));
    if (q === null) return invalid(`query ${i} is not valid UTF-8 without NUL`);
    queries.push(q);
    at += 4 + len;
  }
  if (at !== d.length) return invalid('option length does not match its queries');
  if (!matches(name)) return { error: REP.ERR_UNKNOWN, message: `no export named "${name}"` };
  // LIST with no query lists every context; SET with none selects none
  const wanted = count === 0 ? !set : queries.some((q) => q === META_BASE_ALLOCATION || (!set && q === 'base:'));
  return { contexts: wanted ? [allocationContext()] : [] };
}
