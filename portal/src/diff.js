// The difference between two revisions, packages layer and files layer.
import { useState } from 'preact/hooks';
import { html, useLoad, Status, bytes } from './ui.js';
import * as api from './api.js';

export function DiffView({ name, revisions }) {
  const [a, setA] = useState(revisions[1].tag);
  const [b, setB] = useState(revisions[0].tag);
  const [layer, setLayer] = useState('packages');
  const s = useLoad(() => api.diff(`${name}:${a}`, `${name}:${b}`, layer), [name, a, b, layer]);
  const sel = (id, label, v, set) => html`<label for=${id}>${label}</label><select id=${id} value=${v} onChange=${(e) => set(e.currentTarget.value)}>${revisions.map((r) => html`<option key=${r.tag} value=${r.tag}>${r.tag}</option>`)}</select>`;
  return html`
    <section aria-labelledby="diff-h">
      <h2 id="diff-h">Compare revisions</h2>
      <div class="row">
        ${sel('diff-a', 'From', a, setA)} ${sel('diff-b', 'To', b, setB)}
        <label for="diff-layer">Layer</label>
        <select id="diff-layer" value=${layer} onChange=${(e) => setLayer(e.currentTarget.value)}><option value="packages">packages</option><option value="files">files</option></select>
      </div>
      <${Status} s=${s} what="the difference" />
      ${s.data && (s.data.identical ? html`<p>No difference in ${layer}.</p>` : layer === 'packages' ? html`<${Packages} d=${s.data.packages} />` : html`<${FilesDiff} volumes=${s.data.volumes} />`)}
    </section>`;
}

function Packages({ d }) {
  const rows = [
    ...d.added.map((p) => ['added', p.name, '', p.version]),
    ...d.removed.map((p) => ['removed', p.name, p.version, '']),
    ...d.upgraded.map((p) => ['upgraded', p.name, p.from, p.to]),
    ...d.downgraded.map((p) => ['downgraded', p.name, p.from, p.to]),
  ];
  return html`<div class="scroll"><table>
    <thead><tr><th scope="col">Change</th><th scope="col">Package</th><th scope="col">From</th><th scope="col">To</th></tr></thead>
    <tbody>${rows.map((r, i) => html`<tr key=${i} class=${r[0]}>${r.map((c) => html`<td>${c}</td>`)}</tr>`)}</tbody>
  </table></div>`;
}

function FilesDiff({ volumes }) {
  const rows = [];
  for (const v of volumes || []) {
    if (v.note) rows.push([`partition ${v.index}`, v.note, '']);
    const f = v.files;
    if (!f) continue;
    for (const e of f.added) rows.push(['added', e.path, bytes(e.size)]);
    for (const e of f.removed) rows.push(['removed', e.path, bytes(e.size)]);
    for (const e of f.changed) rows.push(['changed', e.path, e.what.join(', ')]);
  }
  const shown = rows.slice(0, 1000);
  return html`<div class="scroll"><table>
    <thead><tr><th scope="col">Change</th><th scope="col">Path</th><th scope="col">Detail</th></tr></thead>
    <tbody>${shown.map((r, i) => html`<tr key=${i} class=${r[0]}>${r.map((c) => html`<td>${c}</td>`)}</tr>`)}</tbody>
  </table></div>${rows.length > shown.length ? html`<p class="muted">${rows.length - shown.length} more changes not shown.</p>` : null}`;
}
