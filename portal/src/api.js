// The Portal API (docs/http-api.md "Portal API"): one place that knows its paths.
// The publisher's token is kept for this tab only (sessionStorage) and sent with every call,
// so a publisher also sees their unpublished images; a visitor has none.

const TOKEN_KEY = 'vmdn-token';
export const getToken = () => sessionStorage.getItem(TOKEN_KEY) || '';
export const setToken = (t) => (t ? sessionStorage.setItem(TOKEN_KEY, t) : sessionStorage.removeItem(TOKEN_KEY));

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function headers(extra = {}) {
  const t = getToken();
  return t ? { ...extra, authorization: `Bearer ${t}` } : extra;
}

const qs = (params) => {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') u.set(k, String(v));
  return u.toString();
};

async function call(method, path, params = {}, body) {
  const res = await fetch(`/v1/portal/${path}?${qs(params)}`, {
    method,
    headers: headers(body === undefined ? {} : { 'content-type': 'application/json' }),
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const type = res.headers.get('content-type') || '';
  const data = type.includes('application/json') ? await res.json().catch(() => null) : await res.text();
  if (!res.ok) {
    const e = data && data.error;
    throw new ApiError(res.status, e ? e.code : 'E_HTTP', e ? e.message : `${res.status} ${res.statusText}`);
  }
  return data;
}

export const catalog = (p) => call('GET', 'catalog', p);
export const imagePage = (name) => call('GET', 'image', { name });
export const saveMetadata = (name, meta) => call('PUT', 'image', { name }, meta);
export const inside = (ref) => call('GET', 'inside', { ref });
// pathB64: a path's exact bytes (listings give it for names that are not UTF-8); the server prefers it to path
export const ls = (ref, path, pathB64) => call('GET', 'ls', pathB64 ? { ref, pathB64 } : { ref, path });
export const diff = (a, b, layer) => call('GET', 'diff', { a, b, layer });
export const shared = (ref) => call('GET', 'shared', { ref });
export const fileUrl = (ref, path, download, pathB64) => `/v1/portal/file?${qs({ ref, ...(pathB64 ? { pathB64 } : { path }), download: download ? 1 : '' })}`;
export const downloadUrl = (ref, format) => `/v1/portal/download?${qs({ ref, format })}`;

/** A file's text (at most `limit` bytes), or null when the server says it is not text. */
export async function fileText(ref, path, pathB64, limit = 256 * 1024) {
  const res = await fetch(fileUrl(ref, path, false, pathB64), { headers: headers({ range: `bytes=0-${limit - 1}` }) });
  // an empty file has no byte 0 to start a range at
  if (res.status === 416 && /\/0$/.test(res.headers.get('content-range') || '')) return { text: '', partial: false };
  if (!res.ok && res.status !== 206) throw new ApiError(res.status, 'E_HTTP', `${res.status} ${res.statusText}`);
  if (!(res.headers.get('content-type') || '').startsWith('text/')) return null;
  return { text: await res.text(), partial: res.status === 206 && isPartial(res) };
}

function isPartial(res) {
  const m = /bytes (\d+)-(\d+)\/(\d+)/.exec(res.headers.get('content-range') || '');
  return !!m && Number(m[2]) + 1 < Number(m[3]);
}

export const startUpload = (name, tag) => call('POST', 'uploads', {}, { name, tag });
export const job = (id) => call('GET', `uploads/${encodeURIComponent(id)}`);

/** PUT the file with XHR: fetch() reports no upload progress. Resolves to the final Job. */
export function putUpload(id, file, onProgress) {
  return new Promise((resolve, reject) => {
    const x = new XMLHttpRequest();
    x.open('PUT', `/v1/portal/uploads/${encodeURIComponent(id)}`);
    const t = getToken();
    if (t) x.setRequestHeader('authorization', `Bearer ${t}`);
    x.upload.onprogress = (e) => onProgress(e.loaded, e.lengthComputable ? e.total : file.size);
    x.onerror = () => reject(new ApiError(0, 'E_UNREACHABLE', 'the upload failed (network)'));
    x.onload = () => {
      let data = null;
      try {
        data = JSON.parse(x.responseText);
      } catch {}
      if (x.status >= 200 && x.status < 300) resolve(data);
      else reject(new ApiError(x.status, data?.error?.code || 'E_HTTP', data?.error?.message || `${x.status}`));
    };
    x.send(file);
  });
}
