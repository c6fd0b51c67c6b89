// Publishing: the token, an upload with a progress bar (the browser's upload progress, then the
// server's import job), then the metadata form. An upload starts unpublished until the form says so.
import { useEffect, useRef, useState } from 'preact/hooks';
import { html, imageHref, bytes } from './ui.js';
import * as api from './api.js';

export function Publish({ query }) {
  const [token, setTok] = useState(api.getToken());
  const [name, setName] = useState(query.get('name') || '');
  const [tag, setTag] = useState('v1');
  const [file, setFile] = useState(null);
  const [st, setSt] = useState(null); // { phase, sent, total, job, error }
  const [done, setDone] = useState(query.get('name') || '');
  const busy = st && !st.error && st.phase !== 'done';
  const submit = async (e) => {
    e.preventDefault();
    api.setToken(token.trim());
    if (!file) return setSt({ error: 'Choose an image file.' });
    setSt({ phase: 'starting', sent: 0, total: file.size });
    let stop = false;
    try {
      const { job } = await api.startUpload(name.trim(), tag.trim());
      // the import job's own progress, polled while the PUT runs (its answer waits for the import)
      const poll = async () => {
        while (!stop) {
          try {
            const j = await api.job(job);
            if (!stop) setSt((s) => (s && s.phase !== 'done' ? { ...s, job: j } : s));
          } catch {}
          await new Promise((r) => setTimeout(r, 400));
        }
      };
      poll();
      setSt({ phase: 'uploading', sent: 0, total: file.size });
      const j = await api.putUpload(job, file, (sent, total) => setSt((s) => ({ ...s, phase: sent >= total ? 'importing' : 'uploading', sent, total })));
      stop = true;
      setSt({ phase: 'done', sent: file.size, total: file.size, job: j });
      setDone(name.trim());
    } catch (err) {
      stop = true;
      setSt((s) => ({ ...s, error: err.message || String(err) }));
    }
  };
  return html`
    <h1>Publish an image</h1>
    <form class="publish" onSubmit=${submit}>
      <div><label for="token">Upload token</label>
        <input id="token" type="password" autocomplete="off" value=${token} onInput=${(e) => setTok(e.currentTarget.value)} required />
        <p class="hint">The token of <code>vmdn serve --token-file</code>; kept in this tab only.</p></div>
      <div><label for="pub-name">Image name</label>
        <input id="pub-name" value=${name} onInput=${(e) => setName(e.currentTarget.value)} required placeholder="lab/analysis-vm" /></div>
      <div><label for="pub-tag">Revision tag</label>
        <input id="pub-tag" value=${tag} onInput=${(e) => setTag(e.currentTarget.value)} required /></div>
      <div><label for="pub-file">Image file (raw, qcow2, vmdk, vhd, vhdx, vdi, ova; gz/xz/zst/bz2)</label>
        <input id="pub-file" type="file" onChange=${(e) => setFile(e.currentTarget.files[0] || null)} required /></div>
      <button type="submit" disabled=${busy}>Upload</button>
    </form>
    ${st && html`<${Progress} st=${st} />`}
    ${done && html`<${MetadataForm} name=${done} key=${done} />`}`;
}

function Progress({ st }) {
  const j = st.job;
  let label, value, max;
  if (st.phase === 'done') (label = 'Imported'), (value = 1), (max = 1);
  else if (st.phase === 'importing' || (j && j.state === 'importing')) {
    label = 'Importing on the server';
    max = (j && j.totalBytes) || 0;
    value = (j && j.bytesImported) || 0;
  } else (label = 'Uploading'), (value = st.sent), (max = st.total);
  const pct = max ? Math.min(100, Math.round((value / max) * 100)) : null;
  return html`
    <div class="progress" aria-live="polite">
      <label for="upload-progress">${label}${pct === null ? '' : ` ${pct}%`}${st.phase === 'uploading' ? ` (${bytes(st.sent)} of ${bytes(st.total)})` : ''}</label>
      <progress id="upload-progress" max=${max || undefined} value=${max ? value : undefined}></progress>
      ${j && html`<p class="muted">Server job: ${j.state}${j.bytesReceived ? `, ${bytes(j.bytesReceived)} received` : ''}${j.strategy ? `, strategy ${j.strategy}` : ''}</p>`}
      ${st.error && html`<p class="error" role="alert">Upload failed: ${st.error}</p>`}
    </div>`;
}

const FIELDS = ['title', 'description', 'authors', 'citation', 'doi', 'license', 'links'];

function MetadataForm({ name }) {
  const [m, setM] = useState(null);
  const [msg, setMsg] = useState('');
  const heading = useRef(null);
  useEffect(() => {
    api.imagePage(name).then((p) => {
      const md = p.metadata;
      setM({
        title: md.title || '', description: md.description || '', citation: md.citation || '', doi: md.doi || '', license: md.license || '',
        authors: (md.authors || []).join('\n'),
        links: (md.links || []).map((l) => `${l.label} ${l.url}`).join('\n'),
        published: !!p.published,
      });
      heading.current && heading.current.focus();
    }, (e) => setMsg(`Could not load ${name}: ${e.message}`));
  }, [name]);
  const save = async (e) => {
    e.preventDefault();
    const lines = (s) => s.split('\n').map((x) => x.trim()).filter(Boolean);
    const body = {
      title: m.title, description: m.description, citation: m.citation, doi: m.doi, license: m.license,
      authors: lines(m.authors),
      links: lines(m.links).map((l) => {
        const i = l.lastIndexOf(' ');
        return i > 0 ? { label: l.slice(0, i).trim(), url: l.slice(i + 1) } : { label: l, url: l };
      }),
      published: m.published,
    };
    try {
      await api.saveMetadata(name, body);
      setMsg('Saved.');
    } catch (err) {
      setMsg(`Not saved: ${err.message}`);
    }
  };
  const field = (k, label, multi) => html`<div><label for=${`m-${k}`}>${label}</label>${multi
    ? html`<textarea id=${`m-${k}`} rows="4" value=${m[k]} onInput=${(e) => setM({ ...m, [k]: e.currentTarget.value })}></textarea>`
    : html`<input id=${`m-${k}`} value=${m[k]} onInput=${(e) => setM({ ...m, [k]: e.currentTarget.value })} />`}</div>`;
  return html`
    <section aria-labelledby="meta-h">
      <h2 id="meta-h" tabindex="-1" ref=${heading}>Describe <code>${name}</code></h2>
      ${msg && html`<p role="status">${msg}</p>`}
      ${m && html`<form class="publish" onSubmit=${save}>
        ${field('title', 'Title')}
        ${field('description', 'Description', true)}
        ${field('authors', 'Authors (one a line)', true)}
        ${field('citation', 'Citation', true)}
        ${field('doi', 'DOI (10.xxxx/...)')}
        ${field('license', 'License')}
        ${field('links', 'Links (one a line: label then URL)', true)}
        <div class="check"><input id="m-published" type="checkbox" checked=${m.published} onChange=${(e) => setM({ ...m, published: e.currentTarget.checked })} /><label for="m-published">Published (visible to everyone)</label></div>
        <button type="submit">Save</button> <a href=${imageHref(name)}>View the image's page</a>
      </form>`}
    </section>`;
}
