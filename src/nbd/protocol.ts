/**
 * The NBD protocol as data (NetworkBlockDevice/nbd doc/proto.md): magics,
 * numbers and the fixed-size messages, each described once with defineStruct
 * so the server parses and writes them from the same description. All fields
 * are big-endian (network order). Only what vmdn speaks is listed: fixed
 * newstyle handshake, simple replies.
 */
import { defineStruct } from '../util/struct.js';

export const NBDMAGIC = 0x4e42444d41474943n; // "NBDMAGIC"
export const IHAVEOPT = 0x49484156454f5054n; // "IHAVEOPT"
export const OPT_REPLY_MAGIC = 0x3e889045565a9n;
export const REQUEST_MAGIC = 0x25609513;
export const SIMPLE_REPLY_MAGIC = 0x67446698;

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
  CAN_MULTI_CONN: 1 << 8,
} as const;

export const OPT = {
  EXPORT_NAME: 1,
  ABORT: 2,
  LIST: 3,
  INFO: 6,
  GO: 7,
} as const;

export const REP = {
  ACK: 1,
  SERVER: 2,
  INFO: 3,
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
} as const;

/** Command flags. */
export const CMD_FLAG_FUA = 1 << 0;
export const CMD_FLAG_NO_HOLE = 1 << 1;

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
} as const;

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
