// The API client: same-origin fetch with the session cookie; writes carry the CSRF token (contract:
// header X-CSRF-Token equal to the fw_csrf cookie). Errors become ApiError with the API's reason.

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.reason) || `HTTP ${status}`);
    this.status = status;
    this.code = (body && body.code) || "HTTP_" + status;
    this.param = body && body.param;
    this.body = body || {};
  }
}

let csrfToken = "";
let onUnauthorized = () => {};

export function setCsrf(token) { csrfToken = token || ""; }
export function setUnauthorizedHandler(fn) { onUnauthorized = fn; }

function csrf() {
  const cookie = document.cookie.split("; ").find((c) => c.startsWith("fw_csrf="));
  return cookie ? decodeURIComponent(cookie.slice(8)) : csrfToken;
}

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== undefined && v !== null && v !== "") q.set(k, v);
  }
  const s = q.toString();
  return s ? "?" + s : "";
}

async function parse(response) {
  if (response.status === 204) return null;
  const type = response.headers.get("content-type") || "";
  if (type.includes("json")) return response.json();
  return response.blob();
}

/** api("GET", "/v1/events", {query: {...}}) | api("POST", path, {json}) | api("POST", path, {form}) */
export async function api(method, path, { json, form, params, quiet401, timeoutMs } = {}) {
  const headers = { Accept: "application/json" };
  let body;
  if (json !== undefined) { headers["Content-Type"] = "application/json"; body = JSON.stringify(json); }
  if (form !== undefined) body = form;
  if (!["GET", "HEAD", "OPTIONS"].includes(method)) headers["X-CSRF-Token"] = csrf();
  let response;
  try {
    const signal = timeoutMs ? AbortSignal.timeout(timeoutMs) : undefined;
    response = await fetch(path + query(params), { method, headers, body, credentials: "same-origin", signal });
  } catch (e) {
    throw new ApiError(0, { code: "NETWORK", reason: "the service cannot be reached" });
  }
  const data = await parse(response).catch(() => null);
  if (!response.ok) {
    if (response.status === 401 && !quiet401) onUnauthorized();
    throw new ApiError(response.status, data instanceof Blob ? null : data);
  }
  return data;
}

export const get = (path, params) => api("GET", path, { params });

/** Every page of a list (for small collections: watch lists, cameras, groups). */
export async function getAll(path, params = {}, cap = 5000) {
  let out = [], cursor = null;
  do {
    const page = await get(path, { ...params, limit: 1000, cursor });
    out = out.concat(page.results);
    cursor = page.next_cursor;
  } while (cursor && out.length < cap);
  return out;
}

/** A multipart POST with upload progress (fetch has none): onProgress(loaded, total). */
export function upload(path, form, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", path);
    xhr.setRequestHeader("X-CSRF-Token", csrf());
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.onprogress = (e) => onProgress && onProgress(e.loaded, e.lengthComputable ? e.total : 0);
    xhr.onload = () => {
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
      if (xhr.status >= 200 && xhr.status < 300) resolve(body);
      else reject(new ApiError(xhr.status, body));
    };
    xhr.onerror = () => reject(new ApiError(0, { code: "NETWORK", reason: "the upload was interrupted" }));
    xhr.send(form);
  });
}
