/**
 * The NBD protocol as data (NetworkBlockDevice/nbd doc/proto.md): magics,
 * numbers and the fixed-size messages, each described once with defineStruct
 * so the server parses and writes them from the same description. All fields
 * are big-endian (network order). Only what vmdn speaks is listed: fixed
 * newstyle handshake, simple replies, structured replies and the
 * `base:allocation` metadata context (block status).
 */
import { defineStruct } from '../util/struct.js';

export const NBDMAGIC = 0x4e42444d41474943n; // "NBDMAGIC"
export const IHAVEOPT = 0x49484156454f5054n; // "IHAVEOPT"
export const OPT_REPLY_MAGIC = 0x3e889045565a9n;
export const REQUEST_MAGIC = 0x25609513;
export const SIMPLE_REPLY_MAGIC = 0x67446698;
export const STRUCTURED_REPLY_MAGIC = 0x668e33ef;

/** Handshake flags (server) and client flags: the same two bits. */
export const FLAG_FIXED_NEWSTYLE = 1 << 0;
export const FLAG_NO_ZEROES = 1 << 1;
export const CLIENT_FLAGS_KNOWN = FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES;

/** Transmission flags. */
export const TFLAG = {
  HAS_FLAGS: 1 << 0,
  READ_ONLY: 1 << 1,
  SEND_FLUSH: 1 << 2,
  SEND_FUA: 1 << 3,
  SEND_TRIM: 1 << 5,
  SEND_WRITE_ZEROES: 1 << 6,
  /** Only with structured replies: the client may ask for a read in one piece. */
  SEND_DF: 1 << 7,
  CAN_MULTI_CONN: 1 << 8,
} as const;

export const OPT = {
  EXPORT_NAME: 1,
  ABORT: 2,
  LIST: 3,
  INFO: 6,
  GO: 7,
  STRUCTURED_REPLY: 8,
  LIST_META_CONTEXT: 9,
  SET_META_CONTEXT: 10,
} as const;

/** The one metadata context we offer, and the id we give it. */
export const META_BASE_ALLOCATION = 'base:allocation';
export const META_BASE_ALLOCATION_ID = 1;

export const REP = {
  ACK: 1,
  SERVER: 2,
  INFO: 3,
  META_CONTEXT: 4,
  ERR_UNSUP: 2 ** 31 + 1,
  ERR_POLICY: 2 ** 31 + 2,
  ERR_INVALID: 2 ** 31 + 3,
  ERR_UNKNOWN: 2 ** 31 + 6,
  ERR_SHUTDOWN: 2 ** 31 + 7,
  ERR_TOO_BIG: 2 ** 31 + 9,
} as const;

export const INFO = {
  EXPORT: 0,
  NAME: 1,
  DESCRIPTION: 2,
  BLOCK_SIZE: 3,
} as const;

export const CMD = {
  READ: 0,
  WRITE: 1,
  DISC: 2,
  FLUSH: 3,
  TRIM: 4,
  WRITE_ZEROES: 6,
  BLOCK_STATUS: 7,
} as const;

/** Structured reply chunk types and flags. */
export const REPLY_FLAG_DONE = 1 << 0;
export const REPLY_TYPE = {
  NONE: 0,
  OFFSET_DATA: 1,
  OFFSET_HOLE: 2,
  BLOCK_STATUS: 5,
  ERROR: 2 ** 15 + 1,
  ERROR_OFFSET: 2 ** 15 + 2,
} as const;

/** base:allocation extent flags. */
export const STATE_HOLE = 1 << 0;
export const STATE_ZERO = 1 << 1;

/** Command flags. */
export const CMD_FLAG_FUA = 1 << 0;
export const CMD_FLAG_NO_HOLE = 1 << 1;
/** READ: answer in one OFFSET_DATA chunk (don't fragment). */
export const CMD_FLAG_DF = 1 << 2;
/** BLOCK_STATUS: one extent is enough. */
export const CMD_FLAG_REQ_ONE = 1 << 3;

/** errno values on the wire (the protocol fixes them, whatever the host's are). */
export const NBD_ERR = {
  EPERM: 1,
  EIO: 5,
  ENOMEM: 12,
  EINVAL: 22,
  ENOSPC: 28,
  EOVERFLOW: 75,
  ENOTSUP: 95,
  ESHUTDOWN: 108,
} as const;

/** Our bounds on what a client may send. */
export const LIMITS = {
  /** Option data beyond this is refused (ERR_TOO_BIG) and the connection closed: we never buffer more. */
  maxOptionLength: 64 * 1024,
  /** Options per connection before transmission: a client looping forever is cut off. */
  maxOptions: 256,
  /** Largest READ or WRITE payload; advertised as the maximum block size. */
  maxRequest: 32 * 1024 * 1024,
  preferredBlock: 4096,
  /** Extents in one BLOCK_STATUS reply (8 bytes each); the client asks again for the rest. */
  maxExtents: 2048,
  /** Chunks one READ may be split into (data and holes); past that it is sent as one data chunk. */
  maxReadChunks: 64,
  /** Queries in one SET/LIST_META_CONTEXT; each must also fit the option's length. */
  maxMetaQueries: 256,
} as const;

/** Longest export name or query string the protocol allows. */
export const MAX_NAME = 4096;
const utf8 = new TextDecoder('utf-8', { fatal: true });

/** A protocol string (UTF-8, no NUL), or null if it is not one. */
export function decodeName(b: Uint8Array): string | null {
  try {
    const s = utf8.decode(b);
    return s.includes('\0') ? null : s;
  } catch {
    return null;
  }
}

/** S: NBDMAGIC, IHAVEOPT, handshake flags. */
export const ServerGreeting = defineStruct('nbd.greeting', 18, 'be', [
  { name: 'magic', type: 'u64', offset: 0 },
  { name: 'ihaveopt', type: 'u64', offset: 8 },
  { name: 'flags', type: 'u16', offset: 16 },
] as const);

/** C: an option header (its data follows). */
export const OptionHeader = defineStruct('nbd.option', 16, 'be', [
  { name: 'magic', type: 'u64', offset: 0 },
  { name: 'option', type: 'u32', offset: 8 },
  { name: 'length', type: 'u32', offset: 12 },
] as const);

/** S: an option reply header (its data follows). */
export const OptionReply = defineStruct('nbd.option-reply', 20, 'be', [
  { name: 'magic', type: 'u64', offset: 0 },
  { name: 'option', type: 'u32', offset: 8 },
  { name: 'type', type: 'u32', offset: 12 },
  { name: 'length', type: 'u32', offset: 16 },
] as const);

/** S: the reply to NBD_OPT_EXPORT_NAME (124 zero bytes follow unless NO_ZEROES). */
export const ExportNameReply = defineStruct('nbd.export-name-reply', 10, 'be', [
  { name: 'size', type: 'u64', offset: 0 },
  { name: 'flags', type: 'u16', offset: 8 },
] as const);

/** NBD_REP_INFO payloads. */
export const InfoExport = defineStruct('nbd.info-export', 12, 'be', [
  { name: 'type', type: 'u16', offset: 0 },
  { name: 'size', type: 'u64', offset: 2 },
  { name: 'flags', type: 'u16', offset: 10 },
] as const);

export const InfoBlockSize = defineStruct('nbd.info-block-size', 14, 'be', [
  { name: 'type', type: 'u16', offset: 0 },
  { name: 'minimum', type: 'u32', offset: 2 },
  { name: 'preferred', type: 'u32', offset: 6 },
  { name: 'maximum', type: 'u32', offset: 10 },
] as const);

/** C: a transmission request (WRITE data follows). */
export const Request = defineStruct('nbd.request', 28, 'be', [
  { name: 'magic', type: 'u32', offset: 0 },
  { name: 'flags', type: 'u16', offset: 4 },
  { name: 'type', type: 'u16', offset: 6 },
  { name: 'handle', type: 'bytes:8', offset: 8 },
  { name: 'offset', type: 'u64', offset: 16 },
  { name: 'length', type: 'u32', offset: 24 },
] as const);

/** S: a simple reply (READ data follows on success). */
export const SimpleReply = defineStruct('nbd.simple-reply', 16, 'be', [
  { name: 'magic', type: 'u32', offset: 0 },
  { name: 'error', type: 'u32', offset: 4 },
  { name: 'handle', type: 'bytes:8', offset: 8 },
] as const);

/** S: a structured reply chunk header (its payload follows). */
export const StructuredReply = defineStruct('nbd.structured-reply', 20, 'be', [
  { name: 'magic', type: 'u32', offset: 0 },
  { name: 'flags', type: 'u16', offset: 4 },
  { name: 'type', type: 'u16', offset: 6 },
  { name: 'handle', type: 'bytes:8', offset: 8 },
  { name: 'length', type: 'u32', offset: 16 },
] as const);

/** OFFSET_HOLE payload. */
export const HoleChunk = defineStruct('nbd.offset-hole', 12, 'be', [
  { name: 'offset', type: 'u64', offset: 0 },
  { name: 'length', type: 'u32', offset: 8 },
] as const);

/** ERROR payload head (the message follows; ERROR_OFFSET adds a u64 offset after it). */
export const ErrorChunk = defineStruct('nbd.error-chunk', 6, 'be', [
  { name: 'error', type: 'u32', offset: 0 },
  { name: 'messageLength', type: 'u16', offset: 4 },
] as const);
