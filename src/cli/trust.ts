/** The --trust options of the commands that resolve names on a server (pull, warm, nbd, boot). */
import type { Command } from 'commander';
import { RecordTrust } from '../net/client/trust.js';

export interface TrustOptions {
  trust?: string[];
  trustDir?: string;
}

export const trustOptions = (c: Command) =>
  c.option('--trust <key.pub>', 'accept only image records signed by this key (minisign public key; repeatable); the trust directory\'s *.pub keys count too', (v: string, acc: string[] = []) => [...acc, v])
    .option('--trust-dir <dir>', 'trusted keys (*.pub) and the records seen (seen.json); default $VMDN_TRUST_DIR, else ~/.config/vmdn/trust');

/** The keys to check records with; undefined when none are given or found (names are then taken unchecked). */
export const openTrust = (o: TrustOptions): RecordTrust | undefined => RecordTrust.open({ files: o.trust, dir: o.trustDir });

export const TRUST_HELP = `
Signed names: with --trust KEY.pub (or keys in the trust directory), the server's answer for a
name must be an image record signed by one of those keys, not expired, and not older than one
seen before for that name (seen.json in the trust directory); otherwise vmdn refuses it and
exits 11, whoever answered (origin, edge, proxy).`;
