// The file browser: directories as links (the path is in the URL), text files shown, every file downloadable.
import { html, useLoad, Status, bytes, date } from './ui.js';
import * as api from './api.js';

function Crumbs({ path, hrefFor }) {
  const parts = path.split('/').filter(Boolean);
  return html`<nav class="crumbs" aria-label="Path">
    <a href=${hrefFor('/')}>/</a>${parts.map((p, i) => html`<a href=${hrefFor(`/${parts.slice(0, i + 1).join('/')}`)}>${p}</a>${i < parts.length - 1 ? '/' : ''}`)}
  </nav>`;
}

export function Files({ ref_, path, file, hrefFor }) {
  const dir = useLoad(() => api.ls(ref_, path), [ref_, path]);
  return html`
    <${Crumbs} path=${path} hrefFor=${(p) => hrefFor(p)} />
    <${Status} s=${dir} what=${`the directory ${path}`} />
    ${dir.data && html`
      <div class="scroll"><table class="files">
        <caption class="sr">Files in ${path}</caption>
        <thead><tr><th scope="col">Name</th><th scope="col">Size</th><th scope="col">Modified</th><th scope="col"><span class="sr">Download</span></th></tr></thead>
        <tbody>
          ${path !== '/' ? html`<tr><td><a href=${hrefFor(path.replace(/\/[^/]*$/, '') || '/')}>..</a></td><td></td><td></td><td></td></tr>` : null}
          ${dir.data.entries.map((e) => html`
            <tr key=${e.path}>
              <td class="fname">${e.type === 'dir'
                ? html`<a href=${hrefFor(e.path)}>${e.name}/</a>`
                : e.type === 'file'
                  ? html`<a href=${hrefFor(path, e.path)}>${e.name}</a>`
                  : html`<span>${e.name}</span>${e.target !== undefined ? html` <span class="muted">→ ${e.target}</span>` : null}`}</td>
              <td>${e.type === 'file' ? bytes(e.size) : ''}</td>
              <td>${date(e.mtime)}</td>
              <td>${e.type === 'file' ? html`<a href=${api.fileUrl(ref_, e.path, true)} download aria-label=${`Download ${e.name}`}>download</a>` : null}</td>
            </tr>`)}
        </tbody>
      </table></div>`}
    ${file && html`<${FileView} key=${`${ref_}\n${file}`} ref_=${ref_} path=${file} />`}`;
}

function FileView({ ref_, path }) {
  const s = useLoad(() => api.fileText(ref_, path), [ref_, path]);
  return html`
    <section class="fileview" aria-labelledby="fv-h">
      <h4 id="fv-h"><code>${path}</code> <a href=${api.fileUrl(ref_, path, true)} download>Download</a></h4>
      <${Status} s=${s} what=${path} />
      ${s.data === null && html`<p class="muted">Not a text file: download it.</p>`}
      ${s.data && html`<pre class="text" tabindex="0">${s.data.text}</pre>${s.data.partial ? html`<p class="muted">The first 256 KiB are shown.</p>` : null}`}
    </section>`;
}
