// The GUI's only way to the server: the REST API, as the signed-in user. The session cookie
// goes with every request (same origin); changes also carry the session's CSRF token, kept in
// localStorage so every tab of this browser can use it (other sites cannot read it).

const BASE = "/api/v1";
const CSRF_KEY = "peregrine.csrf";
const SAFE = new Set(["GET", "HEAD"]);

export class ApiError extends Error {
  constructor(status, detail, retryAfter) {
    super(detail);
    this.status = status;
    this.retryAfter = retryAfter;
  }
}

let signedOut = () => {};

/** Called when the server says the session is over (401): the app shows the sign-in form. */
export function onSignedOut(callback) {
  signedOut = callback;
}

export function setCsrf(token) {
  if (token) localStorage.setItem(CSRF_KEY, token);
  else localStorage.removeItem(CSRF_KEY);
}

export function hasCsrf() {
  return Boolean(localStorage.getItem(CSRF_KEY));
}

export function url(path, query) {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query || {})) {
    if (value === undefined || value === null || value === "") continue;
    for (const v of Array.isArray(value) ? value : [value]) params.append(key, v);
  }
  const qs = params.toString();
  return BASE + path + (qs ? `?${qs}` : "");
}

export async function api(method, path, { body, query } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (!SAFE.has(method)) headers["X-CSRF-Token"] = localStorage.getItem(CSRF_KEY) || "";
  let response;
  try {
    response = await fetch(url(path, query), {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
    });
  } catch (exc) {
    throw new ApiError(0, `cannot reach the server (${exc.message}): check the network and retry`);
  }
  if (response.status === 401 && path !== "/auth/login") signedOut();
  if (!response.ok) {
    throw new ApiError(response.status, await detail(response),
      response.headers.get("Retry-After"));
  }
  if (response.status === 204) return null;
  return response.json();
}

export const get = (path, query) => api("GET", path, { query });
export const post = (path, body, query) => api("POST", path, { body, query });
export const put = (path, body) => api("PUT", path, { body });
export const del = (path, query) => api("DELETE", path, { query });

async function detail(response) {
  try {
    const body = await response.json();
    if (typeof body.detail === "string") return body.detail;
    if (Array.isArray(body.detail)) {
      // Request validation (422): each problem with the field it is about.
      return body.detail.map((d) => `${(d.loc || []).slice(1).join(".")}: ${d.msg}`).join("; ");
    }
  } catch {
    // not JSON: fall through
  }
  return `${response.status} ${response.statusText}`;
}

/** Live updates of one object (server-sent events); returns a function that stops them. */
export function watch(path, onData, onEnd) {
  const source = new EventSource(url(path));
  source.onmessage = (event) => onData(JSON.parse(event.data));
  source.onerror = () => {
    // The server ends a stream when its object is final; do not reconnect then.
    if (source.readyState !== EventSource.CLOSED) source.close();
    if (onEnd) onEnd();
  };
  return () => source.close();
}
