/**
 * Seeded mutation fuzzing of the OVA parsers: the tar member list and the OVF
 * descriptor (XML reader included). Valid inputs get bytes overwritten,
 * tokens inserted, slices repeated or are cut; each parser must then succeed
 * or throw a VmdnError, quickly. Any other exception, or a hang, is a bug.
 *   VMDN_FUZZ_SEED=<n>   reproduce a run (the seed is printed)
 *   VMDN_FUZZ_CASES=<n>  cases per parser (default 1000)
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { listTar } from '../../src/container/ova/tar.js';
import { generateOvf, parseOvf, updateOvf } from '../../src/container/ova/ovf.js';
import { VmdnError } from '../../src/errors.js';
import { mulberry32, seedFrom } from '../helpers/rng.js';
import { reader, tarOf } from './ova-fixtures.js';

const SEED = seedFrom('VMDN_FUZZ_SEED');
const CASES = Number(process.env.VMDN_FUZZ_CASES ?? 1000);
const CASE_MS = 500;
type Rng = () => number;
const int = (r: Rng, n: number) => Math.floor(r() * n);
const pick = <T>(r: Rng, xs: readonly T[]): T => xs[int(r, xs.length)]!;

const OVF = generateOvf('fuzz', [{ href: 'fuzz-disk1.vmdk', size: 1536, capacity: 1 << 20 }, { href: 'fuzz-disk2.vmdk', size: 700, capacity: 4096 }])
  .replace('<Info>A virtual machine</Info>', '<Info>A virtual machine</Info><!-- note --><Annotation><![CDATA[<x>&]]></Annotation>');
const TOKENS = ['<', '>', '/>', '</', '&', '&amp;', '&#0;', '&#x110000;', '&e;', '"', "'", '=', '<!DOCTYPE a [<!ENTITY e "x">]>', '<!--', '-->', '<![CDATA[', ']]>', '<?', '?>',
  'ovf:', 'xmlns:a="b"', ' ovf:size="99999999999999999999"', ' ovf:capacity="-1"', ' ovf:href="../x"', ' ovf:href="/x"', ' ovf:fileRef="nope"', '<File ovf:id="file1" ovf:href="a"/>', '\0', '\ufeff', 'byte * 2^99', '<Disk ovf:diskId="z" ovf:capacity="1"/>'];

function check(kind: string, i: number, err: unknown, ms: number): void {
  assert.ok(err === undefined || err instanceof VmdnError, `${kind} case ${i} (seed ${SEED}): ${err instanceof Error ? err.stack : String(err)}`);
  assert.ok(ms < CASE_MS, `${kind} case ${i} (seed ${SEED}) took ${ms} ms`);
}

it(`tar member list: ${CASES} mutated archives (seed ${SEED})`, async () => {
  console.log(`# ova tar fuzz seed ${SEED} (VMDN_FUZZ_SEED=${SEED} to replay)`);
  const r = mulberry32(SEED);
  const base = tarOf([['fuzz.ovf', Buffer.from(OVF)], ['fuzz-disk1.vmdk', Buffer.alloc(1536, 1)], ['fuzz-disk2.vmdk', Buffer.alloc(700, 2)]]);
  const headers = [0, 512 + 1024, 512 + 1024 + 512 + 1536];
  let ok = 0;
  for (let i = 0; i < CASES; i++) {
    let b = Buffer.from(base);
    const n = 1 + int(r, 4);
    for (let k = 0; k < n; k++) {
      const h = pick(r, headers);
      const how = int(r, 6);
      if (how === 0) b = b.subarray(0, int(r, b.length));
      else if (how === 1 && h + 512 <= b.length) b.write(pick(r, ['77777777777', '\x80\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff', '00000000000', '7', ' ', '\0', '../x', '/etc', 'x']), h + pick(r, [0, 124, 156, 257, 345]), 'latin1');
      else if (how === 2 && h + 512 <= b.length) b[h + 156] = pick(r, [0x30, 0, 0x35, 0x32, 0x78, 0x67, 0x4c]);
      else if (b.length > 0) b[Math.min(b.length - 1, h + int(r, 512))] = int(r, 256);
      // a valid checksum half the time, so mutations reach the fields behind it
      if (r() < 0.5 && h + 512 <= b.length) {
        b.fill(0x20, h + 148, h + 156);
        let s = 0;
        for (let j = h; j < h + 512; j++) s += b[j]!;
        b.write(`${s.toString(8).padStart(6, '0')}\0 `, h + 148, 'latin1');
      }
    }
    const t0 = Date.now();
    let err: unknown;
    try {
      const m = await listTar(reader(b), b.length, 'fuzz.ova');
      for (const x of m) assert.ok(x.offset + x.size <= b.length && !x.name.includes('/') && !x.name.includes('..'));
      ok++;
    } catch (e) {
      err = e;
    }
    check('tar', i, err, Date.now() - t0);
  }
  console.log(`# tar: ${ok}/${CASES} mutants still listed`);
});

it(`OVF descriptor: ${CASES} mutated descriptors (seed ${SEED})`, () => {
  const r = mulberry32(SEED ^ 0x5a5a5a5a);
  let ok = 0;
  for (let i = 0; i < CASES; i++) {
    let s = OVF;
    const n = 1 + int(r, 4);
    for (let k = 0; k < n; k++) {
      const at = int(r, s.length);
      const how = int(r, 5);
      if (how === 0) s = s.slice(0, at);
      else if (how === 1) s = s.slice(0, at) + pick(r, TOKENS) + s.slice(at);
      else if (how === 2) s = s.slice(0, at) + s.slice(at + 1 + int(r, 20));
      else if (how === 3) { const len = int(r, 200); s = s.slice(0, at) + s.slice(at, at + len).repeat(1 + int(r, 50)) + s.slice(at); }
      else s = s.slice(0, at) + String.fromCharCode(int(r, 128)) + s.slice(at + 1);
    }
    const t0 = Date.now();
    let err: unknown;
    try {
      const o = parseOvf(s, 'fuzz.ovf');
      // whatever parsed must also survive being edited for export
      const text = updateOvf(o, o.files.map((f, j) => ({ href: `x-disk${j + 1}.vmdk`, size: 1, capacity: 512 })));
      if (text !== undefined) parseOvf(text, 'edited');
      ok++;
    } catch (e) {
      err = e;
    }
    check('ovf', i, err, Date.now() - t0);
  }
  console.log(`# ovf: ${ok}/${CASES} mutants still parsed`);
});
