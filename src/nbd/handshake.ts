/**
 * The fixed newstyle handshake, server side: greeting, client flags, then
 * options until the client picks the export (NBD_OPT_GO or the old
 * NBD_OPT_EXPORT_NAME) or leaves. Every length the client sends is checked
 * before anything is read or allocated for it.
 */
import type { Socket } from 'node:net';
import {
  CLIENT_FLAGS_KNOWN, ExportNameReply, FLAG_FIXED_NEWSTYLE, FLAG_NO_ZEROES, IHAVEOPT, INFO, InfoBlockSize, InfoExport,
  LIMITS, MAX_NAME, NBDMAGIC, decodeName, OPT, OPT_REPLY_MAGIC, OptionHeader, OptionReply, REP, ServerGreeting, TFLAG,
} from './protocol.js';
import { metaContextOption } from './meta-context.js';
import { writeAll, type SocketReader } from './socket-io.js';

/** What the server offers: one export under one name (the empty name and aliases lead to it too). */
export interface ExportInfo {
  name: string;
  size: number;
  /** Transmission flags. */
  flags: number;
  matches(name: string): boolean;
}

/**
 * How the handshake ended: in transmission (with structured replies or not,
 * and whether base:allocation was selected), or with the connection to be
 * closed (and why).
 */
export type HandshakeResult = { go: true; structured: boolean; allocation: boolean } | { go: false; why: string };

export async function handshake(sock: Socket, r: SocketReader, exp: ExportInfo): Promise<HandshakeResult> {
  await writeAll(sock, [ServerGreeting.write({ magic: NBDMAGIC, ihaveopt: IHAVEOPT, flags: FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES })]);
  const clientFlags = (await r.read(4)).readUInt32BE(0);
  if ((clientFlags & ~CLIENT_FLAGS_KNOWN) !== 0) return { go: false, why: `unknown client flags 0x${clientFlags.toString(16)}` };
  const noZeroes = (clientFlags & FLAG_NO_ZEROES) !== 0;

  const reply = (option: number, type: number, data: Uint8Array = new Uint8Array(0)) =>
    writeAll(sock, [OptionReply.write({ magic: OPT_REPLY_MAGIC, option, type, length: data.length }), data]);
  const error = (option: number, type: number, message: string) => reply(option, type, Buffer.from(message));
  let structured = false;
  let allocation = false;
  // DF only means something with structured replies: advertised only then
  const flags = () => exp.flags | (structured ? TFLAG.SEND_DF : 0);

  for (let n = 0; n < LIMITS.maxOptions; n++) {
    const h = OptionHeader.parse(await r.read(OptionHeader.size));
    if (h.magic !== IHAVEOPT) return { go: false, why: 'bad option magic' };
    if (h.length > LIMITS.maxOptionLength) {
      // we will not read (or skip) that much: say why, then hang up
      await error(h.option, REP.ERR_TOO_BIG, `option data of ${h.length} bytes exceeds ${LIMITS.maxOptionLength}`);
      return { go: false, why: `option length ${h.length}` };
    }
    const data = await r.read(h.length);
    switch (h.option) {
      case OPT.EXPORT_NAME: {
        const name = decodeName(data);
        // this option cannot answer with an error: the protocol says hang up
        if (name === null || !exp.matches(name)) return { go: false, why: `unknown export "${name ?? '(invalid)'}"` };
        const parts: Uint8Array[] = [ExportNameReply.write({ size: BigInt(exp.size), flags: flags() })];
        if (!noZeroes) parts.push(new Uint8Array(124));
        await writeAll(sock, parts);
        return { go: true, structured, allocation };
      }
      case OPT.ABORT:
        await reply(h.option, REP.ACK);
        return { go: false, why: 'client aborted' };
      case OPT.LIST: {
        if (h.length !== 0) {
          await error(h.option, REP.ERR_INVALID, 'NBD_OPT_LIST takes no data');
          break;
        }
        const name = Buffer.from(exp.name);
        const body = Buffer.alloc(4 + name.length);
        body.writeUInt32BE(name.length, 0);
        name.copy(body, 4);
        await reply(h.option, REP.SERVER, body);
        await reply(h.option, REP.ACK);
        break;
      }
      case OPT.INFO:
      case OPT.GO: {
        const req = parseInfoRequest(data);
        if (typeof req === 'string') {
          await error(h.option, REP.ERR_INVALID, req);
          break;
        }
        if (!exp.matches(req.name)) {
          await error(h.option, REP.ERR_UNKNOWN, `no export named "${req.name}" (this server exports "${exp.name}", also as "")`);
          break;
        }
        await reply(h.option, REP.INFO, InfoExport.write({ type: INFO.EXPORT, size: BigInt(exp.size), flags: flags() }));
        if (req.infos.includes(INFO.NAME)) {
          const name = Buffer.from(exp.name);
          const body = Buffer.alloc(2 + name.length);
          body.writeUInt16BE(INFO.NAME, 0);
          name.copy(body, 2);
          await reply(h.option, REP.INFO, body);
        }
        if (req.infos.includes(INFO.BLOCK_SIZE)) {
          await reply(h.option, REP.INFO, InfoBlockSize.write({ type: INFO.BLOCK_SIZE, minimum: 1, preferred: LIMITS.preferredBlock, maximum: LIMITS.maxRequest }));
        }
        await reply(h.option, REP.ACK);
        if (h.option === OPT.GO) return { go: true, structured, allocation };
        break;
      }
      case OPT.STRUCTURED_REPLY:
        if (h.length !== 0) await error(h.option, REP.ERR_INVALID, 'NBD_OPT_STRUCTURED_REPLY takes no data');
        else {
          structured = true;
          await reply(h.option, REP.ACK);
        }
        break;
      case OPT.LIST_META_CONTEXT:
      case OPT.SET_META_CONTEXT: {
        const set = h.option === OPT.SET_META_CONTEXT;
        if (set && !structured) {
          await error(h.option, REP.ERR_INVALID, 'NBD_OPT_SET_META_CONTEXT needs structured replies first');
          break;
        }
        const r = metaContextOption(data, set, (name) => exp.matches(name));
        if ('error' in r) {
          // a failed SET leaves no context selected
          if (set) allocation = false;
          await error(h.option, r.error, r.message);
          break;
        }
        if (set) allocation = r.contexts.length > 0;
        for (const c of r.contexts) await reply(h.option, REP.META_CONTEXT, c);
        await reply(h.option, REP.ACK);
        break;
      }
      default:
        await error(h.option, REP.ERR_UNSUP, `option ${h.option} is not supported`);
    }
  }
  return { go: false, why: `more than ${LIMITS.maxOptions} options` };
}

/** NBD_OPT_INFO / NBD_OPT_GO data: u32 name length, name, u16 count, u16 info types; or why it is malformed. */
function parseInfoRequest(d: Buffer): { name: string; infos: number[] } | string {
  if (d.length < 6) return 'option data too short';
  const nameLen = d.readUInt32BE(0);
  if (nameLen > MAX_NAME || 4 + nameLen + 2 > d.length) return 'bad export name length';
  const name = decodeName(d.subarray(4, 4 + nameLen));
  if (name === null) return 'export name is not valid UTF-8 without NUL';
  const count = d.readUInt16BE(4 + nameLen);
  if (d.length !== 4 + nameLen + 2 + 2 * count) return 'option length does not match its info requests';
  const infos: number[] = [];
  for (let i = 0; i < count; i++) infos.push(d.readUInt16BE(4 + nameLen + 2 + 2 * i));
  return { name, infos };
}
