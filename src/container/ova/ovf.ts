/**
 * OVF descriptors: only what import and export need is read (References/File:
 * href, id, size; DiskSection/Disk: capacity and its units, fileRef, format),
 * each value validated; the rest of the descriptor is kept as written. Export
 * either updates a stored descriptor in place (the disks' hrefs, sizes,
 * capacities and format) or generates a minimal valid one.
 */
import { VmdnError } from '../../errors.js';
import { attr, childrenNamed, escapeAttr, parseXml, type XmlElement } from './xml.js';
import { safeMemberName } from './tar.js';

export const STREAM_OPTIMIZED = 'http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized';
/** Largest disk capacity accepted (the manifest's own bound). */
const MAX_CAPACITY = 2 ** 50;

export interface OvfFile { id: string; href: string; size?: number; el: XmlElement }
export interface OvfDisk { diskId: string; capacity: number; fileRef?: string; format?: string; el: XmlElement }
export interface Ovf { text: string; files: OvfFile[]; disks: OvfDisk[] }

function fail(source: string, msg: string, data: Record<string, unknown> = {}): never {
  throw new VmdnError('E_FORMAT', `${source}: ${msg}`, { path: source, ...data });
}

function uint(s: string | undefined, source: string, what: string, max: number): number | undefined {
  if (s === undefined) return undefined;
  if (!/^[0-9]{1,17}$/.test(s.trim())) fail(source, `${what} "${s.slice(0, 40)}" is not a whole number`);
  const n = Number(s.trim());
  if (n > max) fail(source, `${what} ${n} is larger than ${max}`);
  return n;
}

/** Bytes per unit of ovf:capacityAllocationUnits ("byte", "byte * 2^30", the old "GigaBytes", ...). */
export function allocationUnit(units: string | undefined, source: string): number {
  if (units === undefined) return 1;
  const u = units.replace(/\s+/g, '');
  const legacy: Record<string, number> = { byte: 1, KiloBytes: 2 ** 10, MegaBytes: 2 ** 20, GigaBytes: 2 ** 30 };
  if (u in legacy) return legacy[u]!;
  const m = /^byte\*(?:2\^([0-9]{1,2})|([0-9]{1,7}))$/.exec(u);
  if (m && m[1] !== undefined && Number(m[1]) <= 50) return 2 ** Number(m[1]);
  if (m && m[2] !== undefined && Number(m[2]) > 0) return Number(m[2]);
  fail(source, `capacity units "${units.slice(0, 40)}" are not understood`);
}

/** Parse and validate an OVF descriptor. */
export function parseOvf(text: string, source: string): Ovf {
  const root = parseXml(text, source);
  if (root.local !== 'Envelope') fail(source, `root element is <${root.name}>, not an OVF <Envelope>`);
  const files: OvfFile[] = [];
  const disks: OvfDisk[] = [];
  const refs = childrenNamed(root, 'References');
  if (refs.length > 1) fail(source, 'more than one References section');
  for (const f of refs.flatMap((r) => childrenNamed(r, 'File'))) {
    const id = attr(f, 'id');
    const href = attr(f, 'href');
    if (!id || !href) fail(source, 'a References/File lacks ovf:id or ovf:href');
    if (files.some((x) => x.id === id)) fail(source, `file id "${id}" is given twice`);
    if (/^[a-z][a-z0-9+.-]*:/i.test(href) && !/^file:/i.test(href)) fail(source, `file "${id}" is a URL (${href.slice(0, 80)}): only files inside the OVA are read`, { href });
    safeMemberName(href.replace(/^file:/i, ''), source);
    files.push({ id, href: href.replace(/^file:/i, ''), size: uint(attr(f, 'size'), source, `size of file "${id}"`, Number.MAX_SAFE_INTEGER), el: f });
  }
  for (const d of childrenNamed(root, 'DiskSection').flatMap((s) => childrenNamed(s, 'Disk'))) {
    const diskId = attr(d, 'diskId');
    if (!diskId) fail(source, 'a DiskSection/Disk lacks ovf:diskId');
    const units = allocationUnit(attr(d, 'capacityAllocationUnits'), source);
    const cap = uint(attr(d, 'capacity'), source, `capacity of disk "${diskId}"`, MAX_CAPACITY);
    if (cap === undefined) fail(source, `disk "${diskId}" has no ovf:capacity`);
    if (cap * units > MAX_CAPACITY) fail(source, `disk "${diskId}" capacity ${cap} x ${units} bytes is too large`);
    const fileRef = attr(d, 'fileRef');
    if (fileRef !== undefined && !files.some((f) => f.id === fileRef)) fail(source, `disk "${diskId}" refers to file "${fileRef}", which References does not list`, { fileRef });
    disks.push({ diskId, capacity: cap * units, fileRef, format: attr(d, 'format'), el: d });
  }
  return { text, files, disks };
}

/** A start tag rewritten with `set` (by local name; new ones take the prefix the tag already uses). */
function retag(text: string, el: XmlElement, set: Record<string, string>): string {
  const prefix = el.attrs.map((a) => a.name).find((n) => n.includes(':') && !n.startsWith('xmlns'))?.split(':')[0];
  const attrs = el.attrs.map((a) => ({ ...a }));
  for (const [k, v] of Object.entries(set)) {
    const have = attrs.find((a) => a.name.slice(a.name.indexOf(':') + 1) === k);
    if (have) have.value = v;
    else attrs.push({ name: prefix ? `${prefix}:${k}` : k, value: v });
  }
  return `<${el.name}${attrs.map((a) => ` ${a.name}="${escapeAttr(a.value)}"`).join('')}${el.selfClosing ? '/>' : '>'}`;
}

export interface OvaDiskOut { href: string; size: number; capacity: number }

/**
 * The stored descriptor with its disks' files pointing at `out` (in disk
 * order), or undefined when it does not fit (another number of disks, or
 * other files an OVA written by vmdn would not contain).
 */
export function updateOvf(ovf: Ovf, out: OvaDiskOut[]): string | undefined {
  const withFile = ovf.disks.filter((d) => d.fileRef !== undefined);
  if (withFile.length !== out.length || ovf.files.length !== out.length) return undefined;
  const edits: Array<{ el: XmlElement; tag: string }> = [];
  withFile.forEach((d, i) => {
    const f = ovf.files.find((x) => x.id === d.fileRef)!;
    edits.push({ el: f.el, tag: retag(ovf.text, f.el, { href: out[i]!.href, size: String(out[i]!.size) }) });
    edits.push({ el: d.el, tag: retag(ovf.text, d.el, { capacity: String(out[i]!.capacity), capacityAllocationUnits: 'byte', format: STREAM_OPTIMIZED }) });
  });
  edits.sort((a, b) => b.el.tagStart - a.el.tagStart);
  let text = ovf.text;
  for (const e of edits) text = text.slice(0, e.el.tagStart) + e.tag + text.slice(e.el.tagEnd);
  return text;
}

/** A minimal valid OVF 1.x descriptor: one virtual system with the disks. */
export function generateOvf(name: string, out: OvaDiskOut[]): string {
  const n = escapeAttr(name);
  const files = out.map((d, i) => `    <File ovf:id="file${i + 1}" ovf:href="${escapeAttr(d.href)}" ovf:size="${d.size}"/>`);
  const disks = out.map((d, i) => `    <Disk ovf:diskId="vmdisk${i + 1}" ovf:fileRef="file${i + 1}" ovf:capacity="${d.capacity}" ovf:capacityAllocationUnits="byte" ovf:format="${STREAM_OPTIMIZED}"/>`);
  const items = out.map((_, i) => [
    '      <Item>',
    `        <rasd:AddressOnParent>${i}</rasd:AddressOnParent>`,
    `        <rasd:ElementName>disk${i + 1}</rasd:ElementName>`,
    `        <rasd:HostResource>ovf:/disk/vmdisk${i + 1}</rasd:HostResource>`,
    `        <rasd:InstanceID>${i + 1}</rasd:InstanceID>`,
    '        <rasd:ResourceType>17</rasd:ResourceType>',
    '      </Item>',
  ].join('\n'));
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    '<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1"',
    '    xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData">',
    '  <References>', ...files, '  </References>',
    '  <DiskSection>', '    <Info>Virtual disk information</Info>', ...disks, '  </DiskSection>',
    `  <VirtualSystem ovf:id="${n}">`, '    <Info>A virtual machine</Info>', `    <Name>${n}</Name>`,
    '    <VirtualHardwareSection>', '      <Info>Virtual hardware requirements</Info>', ...items, '    </VirtualHardwareSection>',
    '  </VirtualSystem>', '</Envelope>', '',
  ].join('\n');
}
