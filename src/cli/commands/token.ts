/** `vmdn token create|list|revoke`: the scoped access tokens an origin (`vmdn serve`) accepts (issue 16). */
import fs from 'node:fs';
import type { Command } from 'commander';
import { parseExpiry, TokenStore, type TokenInfo } from '../../net/server/tokens.js';
import { withStore } from '../../store/location.js';
import { VmdnError } from '../../errors.js';
import { printJson, safe, type GlobalOptions } from '../output.js';
import { action, common } from '../program.js';

const many = (v: string, acc: string[]) => [...acc, v];

function describe(t: TokenInfo): string {
  const state = t.revoked ? `revoked ${t.revoked}` : t.expires && Date.parse(t.expires) <= Date.now() ? `expired ${t.expires}` : t.expires ? `expires ${t.expires}` : 'no expiry';
  const scopes = t.admin ? 'admin' : `read ${t.read.join(',') || '-'}  write ${t.write.join(',') || '-'}`;
  return `${t.id}  ${scopes}  ${state}  created ${t.created}${t.note ? `  ${safe(t.note)}` : ''}`;
}

export function registerTokenCommands(program: Command): void {
  const token = program.command('token').description('make, list and revoke the access tokens an origin (vmdn serve) accepts');

  common(token.command('create'))
    .description('make a token for this store\'s origin and print it, once: only its hash is kept')
    .option('--read <prefix>', 'may see private images whose name starts with PREFIX (repeatable; \'*\': every name)', many, [] as string[])
    .option('--write <prefix>', 'may push names starting with PREFIX (repeatable; implies reading them)', many, [] as string[])
    .option('--admin', 'may read and push every name')
    .option('--expires <when>', 'refused after this: 30d, 12h, 90m or an ISO date')
    .option('--note <text>', 'who or what it is for, shown by `token list`')
    .option('--out <file>', 'write the token to FILE (mode 0600) instead of printing it')
    .addHelpText('after', `
A token is vmdn_<id>_<secret>. The store keeps its id, scopes and a scrypt hash of the
secret: a lost token cannot be shown again, make a new one. Scopes are name prefixes
(tags do not matter). Public images need no token to read; private ones (vmdn push
--private, or vmdn serve --private-prefix) need read scope. Every push needs write
scope on the name it sets. The token of vmdn serve --token-file is an admin token.

  vmdn token create --store /srv/vmdn --write team/ --expires 90d --out team.token
  vmdn push img.qcow2 https://origin --name team/web:1 --private --token-file team.token
  vmdn token create --store /srv/vmdn --read team/ --out reader.token
  vmdn pull https://origin team/web:1 web.qcow2 --token-file reader.token`)
    .action(action(async (o: GlobalOptions & { read: string[]; write: string[]; admin?: boolean; expires?: string; note?: string; out?: string }) => {
      if (!o.admin && !o.read.length && !o.write.length) throw new VmdnError('E_USAGE', 'a token needs --read PREFIX, --write PREFIX or --admin');
      const expires = o.expires ? parseExpiry(o.expires) : undefined;
      const r = await withStore(o.store, (s) => new TokenStore(s).create({ read: o.read, write: o.write, admin: !!o.admin }, { expires, note: o.note }));
      if (o.out) fs.writeFileSync(o.out, `${r.token}\n`, { mode: 0o600, flag: 'wx' });
      if (o.json) return printJson({ ...(o.out ? { file: o.out } : { token: r.token }), ...r.record });
      if (o.out) console.log(`token ${r.record.id} written to ${safe(o.out)}`);
      else console.log(r.token);
    }));

  common(token.command('list'))
    .description('the store\'s tokens: id, scopes, expiry, revocation (never the secrets, which are not kept)')
    .action(action(async (o: GlobalOptions) => {
      const list = await withStore(o.store, (s) => new TokenStore(s).listTokens(), { create: false });
      if (o.json) return printJson({ tokens: list });
      for (const t of list) console.log(describe(t));
    }));

  common(token.command('revoke'))
    .description('refuse a token from now on (a running origin on this store stops accepting it within 2 s)')
    .argument('<id>', 'the token\'s id (vmdn token list; the part after vmdn_)')
    .action(action(async (id: string, o: GlobalOptions) => {
      const m = /^vmdn_([0-9a-f]{16})_/.exec(id);
      const t = await withStore(o.store, (s) => new TokenStore(s).revoke(m ? m[1]! : id), { create: false });
      if (o.json) return printJson(t);
      console.log(`revoked ${t.id}`);
    }));
}
