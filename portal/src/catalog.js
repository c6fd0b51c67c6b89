// The catalog: a search form (its state is the URL's query, so results are linkable), sort, paging.
import { useState } from 'preact/hooks';
import { html, navigate, useLoad, Status, imageHref, bytes, date } from './ui.js';
import * as api from './api.js';

const FIELDS = [
  ['package', 'Package name'],
  ['version', 'Package version'],
  ['path', 'File path'],
  ['os', 'OS (ID)'],
  ['release', 'Release'],
];
const KEYS = ['q', ...FIELDS.map(([k]) => k), 'sort', 'page'];

export function Catalog({ query }) {
  const params = Object.fromEntries(KEYS.map((k) => [k, query.get(k) || '']));
  const key = KEYS.map((k) => params[k]).join('\u0000');
  const s = useLoad(() => api.catalog({ ...params, per: 24 }), [key]);
  const [form, setForm] = useState(params);
  const [formKey, setFormKey] = useState(key);
  if (formKey !== key) {
    // the URL changed (back button, a link): the form follows it
    setForm(params);
    setFormKey(key);
  }
  const go = (p) => {
    const u = new URLSearchParams();
    for (const k of KEYS) if (p[k]) u.set(k, p[k]);
    navigate(`/${u.toString() ? `?${u}` : ''}`);
  };
  const submit = (e) => {
    e.preventDefault();
    go({ ...form, page: '' });
  };
  const set = (k) => (e) => setForm({ ...form, [k]: e.currentTarget.value });
  const advanced = FIELDS.some(([k]) => params[k]);
  const c = s.data;
  const pages = c ? Math.max(1, Math.ceil(c.total / c.per)) : 1;
  const page = c ? c.page : 1;
  const pageHref = (n) => {
    const u = new URLSearchParams();
    for (const k of KEYS) if (params[k] && k !== 'page') u.set(k, params[k]);
    if (n > 1) u.set('page', String(n));
    return `/?${u}`;
  };
  return html`
    <h1>Images</h1>
    <form class="search" role="search" onSubmit=${submit}>
      <div class="row">
        <label for="q">Search</label>
        <input id="q" type="search" name="q" value=${form.q} onInput=${set('q')} placeholder="name, description, OS, release…" />
        <label for="sort">Sort</label>
        <select id="sort" name="sort" value=${form.sort || 'newest'} onChange=${(e) => go({ ...form, sort: e.currentTarget.value, page: '' })}>
          <option value="newest">Newest</option>
          <option value="downloads">Most downloaded</option>
          <option value="name">Name</option>
        </select>
        <button type="submit">Search</button>
      </div>
      <details open=${advanced}>
        <summary>Search inside images (packages, files, OS)</summary>
        <div class="fields">
          ${FIELDS.map(([k, label]) => html`<div><label for=${`f-${k}`}>${label}</label><input id=${`f-${k}`} name=${k} value=${form[k]} onInput=${set(k)} /></div>`)}
        </div>
      </details>
    </form>
    <${Status} s=${s} what="the catalog" />
    ${c && html`
      <p class="muted" aria-live="polite">${c.total} image${c.total === 1 ? '' : 's'}${c.total > c.per ? `, page ${page} of ${pages}` : ''}</p>
      <ul class="cards">
        ${c.images.map((i) => html`
          <li class="card" key=${i.name}>
            <h2><a href=${imageHref(i.name)}>${i.title || i.name}</a></h2>
            ${i.title ? html`<p class="name"><code>${i.name}</code></p>` : null}
            ${i.published === false ? html`<p class="badge">unpublished</p>` : null}
            <p class="desc">${i.description}</p>
            <dl class="facts">
              ${i.os ? html`<div><dt>OS</dt><dd>${i.os}${i.release ? ` ${i.release}` : ''}</dd></div>` : null}
              <div><dt>Newest</dt><dd>${i.tag} · ${date(i.created)}</dd></div>
              <div><dt>Revisions</dt><dd>${i.revisions}</dd></div>
              <div><dt>Size</dt><dd>${bytes(i.virtualSize)}</dd></div>
              <div><dt>Downloads</dt><dd>${i.downloads}</dd></div>
            </dl>
          </li>`)}
      </ul>
      ${pages > 1 && html`
        <nav class="pager" aria-label="Pages">
          ${page > 1 ? html`<a href=${pageHref(page - 1)} rel="prev">Previous</a>` : null}
          <span>Page ${page} of ${pages}</span>
          ${page < pages ? html`<a href=${pageHref(page + 1)} rel="next">Next</a>` : null}
        </nav>`}`}`;
}
