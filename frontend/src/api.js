// Thin client for the reading API (session auth + CSRF). Every call resolves to {status, data};
// HTTP errors reject with ApiError(status, detail, errors), network failures with NetworkError.

export class ApiError extends Error {
  constructor(status, detail, errors = []) {
    super(detail || `HTTP ${status}`);
    this.name = 'ApiError';
    this.status = status;
    this.detail = detail || `The server answered ${status}.`;
    this.errors = Array.isArray(errors) ? errors : [];
  }
}

export class NetworkError extends Error {
  constructor(cause) {
    super('network error');
    this.name = 'NetworkError';
    this.cause = cause;
  }
}

async function parseBody(resp) {
  if (resp.status === 204) return null;
  const type = resp.headers.get('Content-Type') || '';
  if (type.includes('json')) {
    try {
      return await resp.json();
    } catch {
      return null;
    }
  }
  try {
    return { detail: (await resp.text()).slice(0, 300) };
  } catch {
    return null;
  }
}

export function makeApi(base, csrfToken) {
  const root = base.endsWith('/') ? base : `${base}/`;

  async function request(method, path, body) {
    const headers = { Accept: 'application/json' };
    if (method !== 'GET' && method !== 'HEAD') headers['X-CSRFToken'] = csrfToken;
    const init = { method, headers, credentials: 'same-origin', cache: 'no-store' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let resp;
    try {
      resp = await fetch(root + path, init);
    } catch (err) {
      throw new NetworkError(err);
    }
    let data;
    try {
      data = await parseBody(resp);
    } catch (err) {
      throw new NetworkError(err);
    }
    if (!resp.ok) {
      const detail = data && typeof data.detail === 'string' ? data.detail : null;
      throw new ApiError(resp.status, detail, data && data.errors);
    }
    return { status: resp.status, data };
  }

  return {
    session: (id) => request('GET', `sessions/${id}/`),
    startSession: (id) => request('POST', `sessions/${id}/start/`),
    nextItem: (id) => request('GET', `sessions/${id}/next/`),
    submitRead: (itemId, payload) => request('POST', `items/${itemId}/read/`, payload),
  };
}

/** GET a binary resource (the DL overlay); the browser inflates Content-Encoding: gzip itself. */
export async function fetchBytes(url) {
  let resp;
  try {
    resp = await fetch(url, { credentials: 'same-origin' });
  } catch (err) {
    throw new NetworkError(err);
  }
  if (!resp.ok) throw new ApiError(resp.status, `overlay: HTTP ${resp.status}`);
  return { bytes: new Uint8Array(await resp.arrayBuffer()), headers: resp.headers };
}
