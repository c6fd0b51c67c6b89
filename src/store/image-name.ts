import { VmdnError } from '../errors.js';

export interface ImageRef {
  name: string;
  tag: string;
}

const NAME_RE = /^[a-z0-9][a-z0-9._/-]{0,127}$/;
const TAG_RE = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/;

/** `name[:tag]`, tag defaulting to `latest`; names are lowercase like container registries'. */
export function parseImageRef(s: string): ImageRef {
  const i = s.lastIndexOf(':');
  const name = i < 0 ? s : s.slice(0, i);
  const tag = i < 0 ? 'latest' : s.slice(i + 1);
  if (!NAME_RE.test(name) || name.includes('..')) {
    throw new VmdnError('E_USAGE', `invalid image name "${name}": use lowercase letters, digits and . _ / - (max 128)`, { name });
  }
  if (!TAG_RE.test(tag)) throw new VmdnError('E_USAGE', `invalid tag "${tag}": use letters, digits and . _ - (max 128)`, { tag });
  return { name, tag };
}

export function formatImageRef(r: ImageRef): string {
  return `${r.name}:${r.tag}`;
}
