/** `vmdn key generate`: an origin's signing key pair for signed image records (docs/http-api.md). */
import { durationMs } from '../../util/duration.js';
import fs from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { encodePublicKey, encodeSecretKey, generateKey, keyIdHex, parseSecretKey, type SecretKey } from '../../net/wire/minisign.js';
import { VmdnError } from '../../errors.js';
import { printJson, safe, type GlobalOptions } from '../output.js';
import { action, common } from '../program.js';

/** Write by temp file and rename; `exclusive`: refuse to replace a file that exists. */
function writeAtomic(file: string, text: string, mode: number, exclusive: boolean): void {
  if (exclusive && fs.existsSync(file)) throw new VmdnError('E_USAGE', `${file} exists: give another --out, or --force to replace it`);
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, text, { mode });
  fs.renameSync(tmp, file);
}

/** Read an origin's signing key (`vmdn serve --sign-key`). */
export function readSigningKey(file: string): SecretKey {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new VmdnError('E_USAGE', `cannot read signing key ${file}: ${(err as Error).message}`);
  }
  return parseSecretKey(text, file);
}

/** 90s, 30m, 12h, 7d: a record's validity. */
export function parseDuration(v: string): number {
  const ms = durationMs(v) ?? NaN;
  if (!(ms >= 10_000 && ms <= 366 * 86_400_000)) throw new VmdnError('E_USAGE', `expected a duration from 10s to 366d such as 90s, 30m, 24h or 7d, got "${v}"`);
  return ms;
}

export function registerKeyCommands(program: Command): void {
  const key = program.command('key').description('signing keys for image records (an origin signs, clients check with --trust)');
  common(key.command('generate'))
    .description('make a signing key pair: PREFIX.key (secret, for vmdn serve --sign-key) and PREFIX.pub (minisign format, for --trust)')
    .requiredOption('--out <prefix>', 'write PREFIX.key and PREFIX.pub')
    .option('--force', 'replace existing files')
    .addHelpText('after', `
The public key is a minisign public key: clients give it to pull, nbd, boot and warm with
--trust PREFIX.pub (or copy it into their trust directory, ~/.config/vmdn/trust), and anyone can
check a record the origin serves with "minisign -V -p PREFIX.pub -m RECORD -x RECORD.minisig".
The secret key is vmdn's own format (JSON, mode 0600, not encrypted): keep it on the origin only.

Example:
  vmdn key generate --out /etc/vmdn/origin && vmdn serve --sign-key /etc/vmdn/origin.key`)
    .action(action(async (o: GlobalOptions & { out: string; force?: boolean }) => {
      const k = generateKey();
      const secret = `${o.out}.key`;
      const pub = `${o.out}.pub`;
      fs.mkdirSync(path.dirname(path.resolve(secret)), { recursive: true });
      if (!o.force) for (const f of [secret, pub]) if (fs.existsSync(f)) throw new VmdnError('E_USAGE', `${f} exists: give another --out, or --force to replace it`);
      writeAtomic(secret, encodeSecretKey(k), 0o600, !o.force);
      writeAtomic(pub, encodePublicKey(k), 0o644, !o.force);
      if (o.json) return printJson({ keyId: keyIdHex(k.id), key: path.resolve(secret), pub: path.resolve(pub) });
      console.log(`key ${keyIdHex(k.id)}: secret ${safe(secret)} (keep it private), public ${safe(pub)}`);
    }));
}
