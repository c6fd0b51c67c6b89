/**
 * A small, bounded XML reader for OVF descriptors: elements and attributes
 * only (text, comments, processing instructions and CDATA skipped), with the
 * source position of each start tag so a descriptor can be edited in place.
 * DOCTYPE and entity declarations are refused outright (no entity expansion,
 * no external references); only the five predefined entities and character
 * references are decoded. Input size, depth, element and attribute counts
 * are bounded, so hostile input fails fast instead of eating memory.
 */
import { VmdnError } from '../../errors.js';

export const MAX_XML_BYTES = 4 << 20;
const MAX_DEPTH = 64;
const MAX_ELEMENTS = 50_000;
const MAX_ATTRS = 128;

export interface XmlAttr {
  /** As written, with its namespace prefix (e.g. "ovf:href"). */
  name: string;
  value: string;
}

export interface XmlElement {
  /** As written, with its prefix. */
  name: string;
  /** Without the prefix: what OVF readers match on (prefixes vary between tools). */
  local: string;
  attrs: XmlAttr[];
  children: XmlElement[];
  /** Source offsets of the start tag: [tagStart, tagEnd). */
  tagStart: number;
  tagEnd: number;
  selfClosing: boolean;
}

const localName = (n: string) => n.slice(n.indexOf(':') + 1);

/** An attribute by local name (ovf:href, href, vmw:href all match "href"). */
export function attr(e: XmlElement, local: string): string | undefined {
  return e.attrs.find((a) => localName(a.name) === local)?.value;
}

export function childrenNamed(e: XmlElement, local: string): XmlElement[] {
  return e.children.filter((c) => c.local === local);
}

const NAME = /^[A-Za-z_][A-Za-z0-9_.:-]*$/;
const ENTITIES: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };

function decode(s: string, where: () => never): string {
  return s.replace(/&([^;&\s]{0,16});/g, (_, e: string) => {
    if (e in ENTITIES) return ENTITIES[e]!;
    const m = /^#(x[0-9A-Fa-f]{1,6}|[0-9]{1,7})$/.exec(e);
    if (!m) where();
    const cp = m[1]!.startsWith('x') ? parseInt(m[1]!.slice(1), 16) : parseInt(m[1]!, 10);
    if (cp === 0 || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) where();
    return String.fromCodePoint(cp);
  });
}

export function escapeAttr(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/** Parse `text` into its root element; any malformation is E_FORMAT naming `source`. */
export function parseXml(text: string, source: string): XmlElement {
  const fail = (msg: string, at?: number): never => {
    throw new VmdnError('E_FORMAT', `${source}: ${msg}${at === undefined ? '' : ` (at byte ${at})`}`, { path: source, offset: at });
  };
  if (text.length > MAX_XML_BYTES) fail(`descriptor of ${text.length} characters is larger than ${MAX_XML_BYTES}`);
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  const stack: XmlElement[] = [];
  let root: XmlElement | undefined;
  let count = 0;
  let i = 0;
  const n = text.length;
  while (i < n) {
    const lt = text.indexOf('<', i);
    const chunk = lt < 0 ? text.slice(i) : text.slice(i, lt);
    if (/\S/.test(chunk) && stack.length === 0) fail('text outside the root element', i);
    if (chunk.includes('&')) decode(chunk, () => fail('unknown entity in text (entity declarations are refused)', i));
    if (lt < 0) break;
    i = lt;
    if (text.startsWith('<?', i)) {
      const e = text.indexOf('?>', i + 2);
      if (e < 0) fail('unterminated processing instruction', i);
      i = e + 2;
    } else if (text.startsWith('<!--', i)) {
      const e = text.indexOf('-->', i + 4);
      if (e < 0) fail('unterminated comment', i);
      i = e + 3;
    } else if (text.startsWith('<![CDATA[', i)) {
      if (stack.length === 0) fail('CDATA outside the root element', i);
      const e = text.indexOf(']]>', i + 9);
      if (e < 0) fail('unterminated CDATA section', i);
      i = e + 3;
    } else if (text.startsWith('<!', i)) {
      fail('DOCTYPE and entity declarations are not accepted in an OVF descriptor', i);
    } else if (text.startsWith('</', i)) {
      const e = text.indexOf('>', i);
      if (e < 0) fail('unterminated end tag', i);
      const name = text.slice(i + 2, e).trim();
      const open = stack.pop();
      if (!open || open.name !== name) fail(`end tag </${name}> does not match <${open?.name ?? ''}>`, i);
      i = e + 1;
    } else {
      const start = i;
      i++;
      const nm = /^[^\s/>]+/.exec(text.slice(i, i + 256))?.[0] ?? '';
      if (!NAME.test(nm)) fail('bad element name', start);
      i += nm.length;
      const el: XmlElement = { name: nm, local: localName(nm), attrs: [], children: [], tagStart: start, tagEnd: 0, selfClosing: false };
      for (;;) {
        while (i < n && /\s/.test(text[i]!)) i++;
        if (i >= n) fail('unterminated start tag', start);
        if (text[i] === '>') { i++; break; }
        if (text.startsWith('/>', i)) { el.selfClosing = true; i += 2; break; }
        const an = /^[^\s=/>]+/.exec(text.slice(i, i + 256))?.[0] ?? '';
        if (!NAME.test(an)) fail('bad attribute name', i);
        i += an.length;
        while (i < n && /\s/.test(text[i]!)) i++;
        if (text[i] !== '=') fail(`attribute ${an} has no value`, i);
        i++;
        while (i < n && /\s/.test(text[i]!)) i++;
        const q = text[i];
        if (q !== '"' && q !== "'") fail(`attribute ${an} is not quoted`, i);
        const end = text.indexOf(q, i + 1);
        if (end < 0) fail('unterminated attribute value', i);
        const rawValue = text.slice(i + 1, end);
        if (rawValue.includes('<')) fail(`"<" in attribute ${an}`, i);
        if (el.attrs.some((a) => a.name === an)) fail(`attribute ${an} given twice`, i);
        if (el.attrs.length >= MAX_ATTRS) fail('too many attributes', i);
        el.attrs.push({ name: an, value: decode(rawValue, () => fail(`unknown entity in attribute ${an}`, i)) });
        i = end + 1;
      }
      el.tagEnd = i;
      if (++count > MAX_ELEMENTS) fail(`more than ${MAX_ELEMENTS} elements`);
      const parent = stack[stack.length - 1];
      if (parent) parent.children.push(el);
      else if (root) fail('more than one root element', start);
      else root = el;
      if (!el.selfClosing) {
        if (stack.length >= MAX_DEPTH) fail(`elements nested deeper than ${MAX_DEPTH}`, start);
        stack.push(el);
      }
    }
  }
  if (stack.length) fail(`element <${stack[stack.length - 1]!.name}> is not closed`);
  if (!root) fail('no root element');
  return root!;
}
