// The file browser: directories as links (the path is in the URL), text files shown, every file downloadable.
import { html, useLoad, Status, bytes, date } from './ui.js';
import * as api from './api.js';

const b64ToBytes = (b) => Uint8Array.from(atob(b), (c) => c.charCodeAt(0));
const bytesToB64 = (u) => btoa(String.fromCharCode(...u));
const lossy = (u) => new TextDecoder().decode(u);

/** The directories leading to `path`, each { name, path, pathB64? }; by bytes when the path is given as bytes (not UTF-8). */
function prefixes(path, pathB64) {
  if (!pathB64) {
    const parts = path.split('/').filter(Boolean);
    return parts.map((p, i) => ({ name: p, path: `/${parts.slice(0, i + 1).join('/')}` }));
  }
  const b = b64ToBytes(pathB64);
  const out = [];
  for (let s = 0, i = 0; i <= b.length; i++) {
    if (i < b.length && b[i] !== 0x2f) continue;
    if (i > s) out.push({ name: lossy(b.subarray(s, i)), path: lossy(b.subarray(0, i)), pathB64: bytesToB64(b.subarray(0, i)) });
    s = i + 1;
  }
  return out;
}

function Crumbs({ parts, hrefFor }) {
  return html`<nav class="crumbs" aria-label="Path">
    <a href=${hrefFor('/')}>/</a>${parts.map((p, i) => html`<a href=${hrefFor(p.path, undefined, p.pathB64)}>${p.name}</a>${i < parts.length - 1 ? '/' : ''}`)}
  </nav>`;
}

export function Files({ ref_, path, pathB64, file, fileB64, hrefFor }) {
  const dir = useLoad(() => api.ls(ref_, path, pathB64), [ref_, path, pathB64]);
  const parts = prefixes(path, pathB64);
  const up = parts[parts.length - 2] || { path: '/' };
  return html`
    <${Crumbs} parts=${parts} hrefFor=${hrefFor} />
    <${Status} s=${dir} what=${`the directory ${path}`} />
    ${dir.data && html`
      <div class="scroll"><table class="files">
        <caption class="sr">Files in ${path}</caption>
        <thead><tr><th scope="col">Name</th><th scope="col">Size</th><th scope="col">Modified</th><th scope="col"><span class="sr">Download</span></th></tr></thead>
        <tbody>
          ${parts.length ? html`<tr><td><a href=${hrefFor(up.path, undefined, up.pathB64)}>..</a></td><td></td><td></td><td></td></tr>` : null}
          ${dir.data.entries.map((e) => html`
            <tr key=${e.pathB64 || e.path}>
              <td class="fname">${e.type === 'dir'
                ? html`<a href=${hrefFor(e.path, undefined, e.pathB64)}>${e.name}/</a>`
                : e.type === 'file'
                  ? html`<a href=${hrefFor(path, e.path, pathB64, e.pathB64)}>${e.name}</a>`
                  : html`<span>${e.name}</span>${e.target !== undefined ? html` <span class="muted">→ ${e.target}</span>` : null}`}</td>
              <td>${e.type === 'file' ? bytes(e.size) : ''}</td>
              <td>${date(e.mtime)}</td>
              <td>${e.type === 'file' ? html`<a href=${api.fileUrl(ref_, e.path, true, e.pathB64)} download aria-label=${`Download ${e.name}`}>download</a>` : null}</td>
            </tr>`)}
        </tbody>
      </table></div>`}
    ${file && html`<${FileView} key=${`${ref_}\n${fileB64 || file}`} ref_=${ref_} path=${file} pathB64=${fileB64} />`}`;
}

function FileView({ ref_, path, pathB64 }) {
  const s = useLoad(() => api.fileText(ref_, path, pathB64), [ref_, path, pathB64]);
  return html`
    <section class="fileview" aria-labelledby="fv-h">
      <h4 id="fv-h"><code>${path}</code> <a href=${api.fileUrl(ref_, path, true, pathB64)} download>Download</a></h4>
      <${Status} s=${s} what=${path} />
      ${s.data === null && html`<p class="muted">Not a text file: download it.</p>`}
      ${s.data && html`<pre class="text" tabindex="0">${s.data.text}</pre>${s.data.partial ? html`<p class="muted">The first 256 KiB are shown.</p>` : null}`}
    </section>`;
}
