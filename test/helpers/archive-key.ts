/**
 * An OpenPGP signing key made for a test archive (gpg --quick-gen-key in a
 * temp GNUPGHOME), its public half exported as a binary keyring for gpgv,
 * and the Release text of a test suite, clearsigned with it as InRelease.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';

export class ArchiveKey {
  private constructor(
    readonly home: string,
    /** The public key as a binary keyring (what `--keyring` takes). */
    readonly keyring: string,
  ) {}

  static generate(name = 'vmdn test archive'): ArchiveKey {
    const home = fs.mkdtempSync(path.join(os.tmpdir(), 'vmdn-archive-key-'));
    fs.chmodSync(home, 0o700);
    const gpg = (args: string[], input?: string) => execFileSync('gpg', ['--homedir', home, '--batch', '--quiet', ...args], { input, stdio: ['pipe', 'pipe', 'pipe'] });
    gpg(['--passphrase', '', '--quick-gen-key', `${name} <archive@vmdn.invalid>`, 'ed25519', 'sign', 'never']);
    const keyring = path.join(home, 'archive.gpg');
    fs.writeFileSync(keyring, gpg(['--export']));
    return new ArchiveKey(home, keyring);
  }

  /** The keys of a binary keyring ASCII-armored (as an .asc keyring), through a scratch GNUPGHOME `dir`. */
  static armorOf(keyring: string, dir: string): Buffer {
    fs.chmodSync(dir, 0o700);
    execFileSync('gpg', ['--homedir', dir, '--batch', '--quiet', '--import', keyring], { stdio: ['ignore', 'pipe', 'pipe'] });
    return execFileSync('gpg', ['--homedir', dir, '--batch', '--quiet', '--armor', '--export'], { stdio: ['ignore', 'pipe', 'pipe'] });
  }

  clearsign(text: string): Buffer {
    return execFileSync('gpg', ['--homedir', this.home, '--batch', '--quiet', '--clearsign', '--digest-algo', 'SHA256'], { input: text, stdio: ['pipe', 'pipe', 'pipe'] });
  }

  remove(): void {
    fs.rmSync(this.home, { recursive: true, force: true });
  }
}

/** A suite's Release: its names, a date, and the SHA-256 and size of each index. */
export function releaseText(suite: string, files: Array<{ path: string; sha256: string; size: number }>, extra: string[] = []): string {
  return [
    'Origin: vmdn tests', 'Label: vmdn tests', `Suite: ${suite}`, `Codename: ${suite}`, `Date: ${new Date().toUTCString().replace('GMT', 'UTC')}`, ...extra,
    'Architectures: amd64', 'Components: main', 'Description: a test archive', 'SHA256:',
    ...files.map((f) => ` ${f.sha256} ${String(f.size).padStart(8)} ${f.path}`), '',
  ].join('\n');
}
