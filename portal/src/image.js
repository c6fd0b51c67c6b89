// An image's page: publisher metadata, revisions, downloads and commands, what is inside, files, diff, what it shares.
import { useState } from 'preact/hooks';
import { html, useLoad, Status, imageHref, bytes, date, safeUrl } from './ui.js';
import * as api from './api.js';
import { Files } from './files.js';
import { DiffView } from './diff.js';
import { SharedBars, DownloadsPlot } from './plots.js';

export function ImagePage({ name, tag }) {
  const s = useLoad(() => api.imagePage(name), [name]);
  if (!s.data) return html`<h1>${name}</h1><${Status} s=${s} what="this image" />`;
  const p = s.data;
  const rev = p.revisions.find((r) => r.tag === tag) || p.revisions[0];
  const ref = `${p.name}:${rev.tag}`;
  const q = new URLSearchParams(location.search);
  const dir = q.get('path') || '/';
  const file = q.get('file') || '';
  // names that are not UTF-8 travel as their exact bytes (base64) beside the readable path
  const dirB64 = q.get('pathB64') || '';
  const fileB64 = q.get('fileB64') || '';
  const hrefFor = (d, f, dB64, fB64) => {
    const u = new URLSearchParams();
    if (tag) u.set('tag', tag);
    u.set('path', d);
    if (dB64) u.set('pathB64', dB64);
    if (f) u.set('file', f);
    if (f && fB64) u.set('fileB64', fB64);
    return `${imageHref(p.name)}?${u}#files`;
  };
  const m = p.metadata;
  const newest = rev === p.revisions[0];
  return html`
    <article class="image">
      <h1>${m.title || p.name}</h1>
      <p class="name"><code>${p.name}</code>${p.published ? null : html` <span class="badge">unpublished</span>`}</p>
      ${m.description && html`<p class="desc long">${m.description}</p>`}
      <dl class="meta">
        ${m.authors && m.authors.length ? html`<div><dt>Authors</dt><dd>${m.authors.join(', ')}</dd></div>` : null}
        ${m.license && html`<div><dt>License</dt><dd>${m.license}</dd></div>`}
        ${m.doi && html`<div><dt>DOI</dt><dd>${safeUrl(`https://doi.org/${m.doi}`) && /^10\.\S+$/.test(m.doi) ? html`<a href=${`https://doi.org/${encodeURI(m.doi)}`} rel="noopener noreferrer">${m.doi}</a>` : m.doi}</dd></div>`}
        ${m.citation && html`<div><dt>Cite as</dt><dd class="long">${m.citation}</dd></div>`}
        ${m.links && m.links.length ? html`<div><dt>Links</dt><dd><ul class="links">${m.links.map((l, i) => html`<li key=${i}>${safeUrl(l.url) ? html`<a href=${safeUrl(l.url)} rel="noopener noreferrer nofollow">${l.label || l.url}</a>` : html`${l.label} ${l.url}`}</li>`)}</ul></dd></div>` : null}
        <div><dt>Downloads</dt><dd>${p.downloads}</dd></div>
      </dl>

      <section aria-labelledby="revs-h">
        <h2 id="revs-h">Revisions</h2>
        <div class="scroll"><table>
          <thead><tr><th scope="col">Tag</th><th scope="col">Date</th><th scope="col">Size</th><th scope="col">Stored</th><th scope="col">Strategy</th><th scope="col">Downloads</th></tr></thead>
          <tbody>${p.revisions.map((r) => html`
            <tr key=${r.tag} class=${r === rev ? 'current' : ''}>
              <td><a href=${imageHref(p.name, r.tag)} aria-current=${r === rev ? 'page' : undefined}>${r.tag}</a></td>
              <td>${date(r.created)}</td><td>${bytes(r.virtualSize)}</td><td>${bytes(r.dataSize)}</td><td>${r.strategy}</td><td>${r.downloads}</td>
            </tr>`)}</tbody>
        </table></div>
        <${DownloadsPlot} revisions=${p.revisions} />
      </section>

      <section aria-labelledby="dl-h">
        <h2 id="dl-h">Get revision ${rev.tag}</h2>
        <ul class="formats">${p.formats.map((f) => html`<li key=${f.format}><a class="button" href=${newest ? f.url : api.downloadUrl(ref, f.format)} download>${f.format}</a></li>`)}</ul>
        <${Commands} page=${p} ref_=${ref} newest=${newest} />
      </section>

      <${Inside} ref_=${ref} />

      <section aria-labelledby="files-h" id="files">
        <h2 id="files-h">Files</h2>
        <${Files} ref_=${ref} path=${dir} pathB64=${dirB64} file=${file} fileB64=${fileB64} hrefFor=${hrefFor} />
      </section>

      ${p.revisions.length > 1 && html`<${DiffView} name=${p.name} revisions=${p.revisions} />`}

      <${Shared} ref_=${ref} />
    </article>`;
}

function Commands({ page, ref_, newest }) {
  // the server writes the commands for the newest revision; another revision's are the same with its ref
  const latest = `${page.name}:${page.revisions[0].tag}`;
  const swap = (c) => (newest ? c : c.split(latest).join(ref_).split(encodeURIComponent(latest)).join(encodeURIComponent(ref_)));
  const cmds = Object.fromEntries(Object.entries(page.commands || {}).map(([k, c]) => [k, swap(String(c))]));
  const [copied, setCopied] = useState('');
  const copy = (k) => navigator.clipboard && navigator.clipboard.writeText(cmds[k]).then(() => setCopied(k), () => {});
  return html`
    <dl class="commands">
      ${Object.keys(cmds).map((k) => html`<div key=${k}><dt>${k}</dt><dd><pre tabindex="0">${cmds[k]}</pre><button type="button" onClick=${() => copy(k)}>${copied === k ? 'Copied' : 'Copy'}<span class="sr"> the ${k} command</span></button></dd></div>`)}
    </dl>
    <p class="muted">No <code>vmdn</code> on your PATH? In a vmdn checkout run <code>npx vmdn …</code>, or install it with <code>npm install -g .</code></p>`;
}

function Inside({ ref_ }) {
  const s = useLoad(() => api.inside(ref_), [ref_]);
  const [filter, setFilter] = useState('');
  const d = s.data;
  const pk = d ? d.packages.filter((p) => !filter || p.name.includes(filter)) : [];
  return html`
    <section aria-labelledby="inside-h">
      <h2 id="inside-h">Inside</h2>
      <${Status} s=${s} what="what is inside" />
      ${d && html`
        <dl class="meta">
          <div><dt>OS</dt><dd>${d.os ? d.os.prettyName || `${d.os.id} ${d.os.versionId || ''}` : 'not recognised'}</dd></div>
          <div><dt>Size</dt><dd>${bytes(d.virtualSize)}</dd></div>
        </dl>
        <h3>Partitions and filesystems</h3>
        <div class="scroll"><table>
          <thead><tr><th scope="col">#</th><th scope="col">Start</th><th scope="col">Size</th><th scope="col">Type</th><th scope="col">Filesystem</th></tr></thead>
          <tbody>${volumes(d).map((v, i) => html`<tr key=${i}><td>${v.index}</td><td>${v.start}</td><td>${v.size}</td><td>${v.type}</td><td>${v.fs}</td></tr>`)}</tbody>
        </table></div>
        <h3>Packages (${d.packages.length})</h3>
        ${d.packages.length ? html`
          <label for="pkg-filter">Filter packages</label> <input id="pkg-filter" value=${filter} onInput=${(e) => setFilter(e.currentTarget.value)} />
          <div class="scroll pkgs"><table>
            <thead><tr><th scope="col">Name</th><th scope="col">Version</th><th scope="col">Arch</th></tr></thead>
            <tbody>${pk.slice(0, 2000).map((p) => html`<tr key=${p.name + p.arch}><td>${p.name}</td><td>${p.version}</td><td>${p.arch}</td></tr>`)}</tbody>
          </table></div>` : html`<p class="muted">No package database found.</p>`}`}
    </section>`;
}

/** Partitions (inspect's shape: offset/length in bytes) joined with the filesystems found on them. */
function volumes(d) {
  const fsText = (f) => [f.kind, f.label && `"${f.label}"`, f.totalBytes && `${bytes(f.usedBytes)} of ${bytes(f.totalBytes)} used`, f.note].filter(Boolean).join(', ');
  const fsOf = (idx) => d.filesystems.filter((f) => f.index === idx).map(fsText).join('; ');
  const rows = d.partitions.map((p) => ({ index: String(p.index), start: bytes(p.offset), size: bytes(p.length), type: [p.typeName || p.type, p.name].filter(Boolean).join(' · '), fs: fsOf(p.index) }));
  // a disk with no partition table: its one volume is the whole disk
  if (!rows.length) for (const f of d.filesystems) rows.push({ index: '-', start: bytes(0), size: bytes(d.virtualSize), type: 'whole disk', fs: fsText(f) });
  return rows;
}

function Shared({ ref_ }) {
  const s = useLoad(() => api.shared(ref_), [ref_]);
  return html`
    <section aria-labelledby="shared-h">
      <h2 id="shared-h">Shared with other images</h2>
      <${Status} s=${s} what="what this image shares" />
      ${s.data && html`<div class="plots">
        <${SharedBars} title="Packages" part=${s.data.packages} />
        <${SharedBars} title="Files" part=${s.data.files} />
      </div>`}
    </section>`;
}
