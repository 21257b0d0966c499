// The JSON API as the page uses it: same-origin requests carrying the session cookie, the
// session's CSRF token on every change, and Civis error bodies turned into ApiError.

let csrfToken = null;
let onSignedOut = () => {};

export function setSession(token, signedOut) {
  csrfToken = token;
  if (signedOut) onSignedOut = signedOut;
}

export class ApiError extends Error {
  constructor(status, description, error) {
    super(description);
    this.status = status;
    this.error = error || '';
  }
}

function url(path, params) {
  const u = new URL(path, window.location.origin);
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== null && v !== undefined && v !== '') u.searchParams.set(k, String(v));
  }
  return u;
}

export async function request(method, path, { params, body } = {}) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && method !== 'HEAD' && csrfToken) headers['X-CSRF-Token'] = csrfToken;
  let response;
  try {
    response = await fetch(url(path, params), {
      method, headers, credentials: 'same-origin', cache: 'no-store',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    throw new ApiError(0, 'The server cannot be reached. Check the connection and try again.');
  }
  if (!response.ok) {
    let description = `${response.status} ${response.statusText}`;
    let error = '';
    try {
      const data = await response.json();
      if (data && typeof data.errorDescription === 'string') { description = data.errorDescription; error = data.error; }
    } catch (e) { /* not JSON: keep the status line */ }
    if (response.status === 401 && !path.startsWith('/ui/session')) onSignedOut();
    throw new ApiError(response.status, description, error);
  }
  const data = response.status === 204 ? null : await response.json();
  return { data, headers: response.headers };
}

export const get = async (path, params) => (await request('GET', path, { params })).data;
export const post = async (path, body) => (await request('POST', path, { body: body === undefined ? {} : body })).data;
export const put = async (path, body) => (await request('PUT', path, { body })).data;
export const del = async (path) => (await request('DELETE', path)).data;

export function pageOf(headers) {
  const n = (name, fallback) => { const v = parseInt(headers.get(name) || '', 10); return Number.isNaN(v) ? fallback : v; };
  return { page: n('X-Pagination-Current-Page', 1), pages: n('X-Pagination-Total-Pages', 1), total: n('X-Pagination-Total-Entries', 0) };
}
