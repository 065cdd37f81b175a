// The console's only door to the gateway: keeps the management token in sessionStorage,
// sends it as a Bearer header on management calls, turns error answers into ApiError, and
// explains each error with what the user can do about it. Downloads go through fetch + Blob
// so that the token never appears in a URL.

const TOKEN_KEY = 'gateway-console-token';

/** An API call that failed: `status` 0 means the gateway could not be reached. */
export class ApiError extends Error {
  constructor(status, code, message, retryAfter) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

/** The management token of this browser tab, or null. */
export function getToken() {
  return sessionStorage.getItem(TOKEN_KEY);
}

/** Keeps `token` for this tab only. */
export function setToken(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
}

/** Forgets the token (sign out). */
export function clearToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

/** The path of `rest` under project `projectId`, e.g. projectPath(id, "/usage"). */
export function projectPath(projectId, rest) {
  return `/v1/projects/${encodeURIComponent(projectId)}${rest}`;
}

/** The path of `rest` under region `region` of project `projectId`. */
export function regionPath(projectId, region, rest) {
  return projectPath(projectId, `/regions/${encodeURIComponent(region)}${rest}`);
}

/** The path of `rest` in the public model catalog of `region`, e.g. catalogPath(r, "/models"). */
export function catalogPath(region, rest) {
  return `/v1/regions/${encodeURIComponent(region)}${rest}`;
}

/** Whether `error` is the cancellation of a request (its view was left), not a failure. */
export function isAbort(error) {
  return error?.name === 'AbortError';
}

/**
 * Calls `path` and answers its JSON body (null when empty). Options: method, body (sent as
 * JSON), auth (false for public catalog calls), signal.
 */
export async function requestJson(path, options = {}) {
  const response = await send(path, { ...options, accept: 'application/json' });
  const text = await response.text();
  return text ? JSON.parse(text) : null;
}

/** Fetches `path` as `accept` and saves the answer as the file `filename`. */
export async function download(path, accept, filename, signal) {
  const response = await send(path, { accept, signal });
  const url = URL.createObjectURL(await response.blob());
  const link = document.createElement('a');
  link.href = url;
  link.download = filename;
  link.hidden = true;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

/**
 * The error's message from the API followed by what the user should do about it; empty for a
 * cancelled request, which nobody needs to be told about.
 */
export function explain(error) {
  if (isAbort(error)) {
    return '';
  }
  if (!(error instanceof ApiError)) {
    return `Something unexpected went wrong (${error.message}). Reload the page and try again.`;
  }
  const advice = adviceFor(error);
  return advice ? `${error.message} ${advice}` : error.message;
}

function adviceFor(error) {
  switch (error.status) {
    case 0:
      return 'Check that the gateway is running and reachable from this browser, then try again.';
    case 401:
      return 'Your management token is no longer accepted: sign out and sign in again with a valid token.';
    case 403:
      return error.code === 'insufficient_role'
        ? 'Your role on this project cannot do this; ask an owner of the project.'
        : 'Open the console from the gateway\u2019s own address and try again.';
    case 404:
      return 'The project or key no longer exists: reload the page.';
    case 409:
      return 'Someone changed this at the same time: reload the page and try again.';
    case 429:
      return error.retryAfter
        ? `Too many requests: wait ${error.retryAfter} seconds, then retry.`
        : 'Too many requests: wait a moment, then retry.';
    default:
      return error.status >= 500
        ? 'The gateway could not answer: try again in a moment, and tell your operator if it persists.'
        : '';
  }
}

async function send(path, { method = 'GET', body, accept, auth = true, signal }) {
  const headers = { Accept: accept };
  const token = getToken();
  if (auth && token) {
    headers.Authorization = `Bearer ${token}`;
  }
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
  }
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store',
      credentials: 'omit',
      signal,
    });
  } catch (error) {
    if (isAbort(error)) {
      throw error;
    }
    throw new ApiError(0, 'network_error', 'The gateway could not be reached.');
  }
  if (!response.ok) {
    throw await errorOf(response);
  }
  return response;
}

/** An ApiError from an error answer: `{"error": code, "message"}` or OpenAI's nested shape. */
async function errorOf(response) {
  const retryAfter = response.headers.get('Retry-After');
  let body = null;
  try {
    body = await response.json();
  } catch {
    // Not JSON (e.g. a proxy's HTML page): fall back to the status line below.
  }
  const nested = body && typeof body.error === 'object' ? body.error : null;
  const code = nested ? nested.code ?? nested.type : body?.error;
  const message = (nested ? nested.message : body?.message)
    || `The gateway answered with status ${response.status}.`;
  return new ApiError(response.status, code ?? 'http_error', message, retryAfter);
}
