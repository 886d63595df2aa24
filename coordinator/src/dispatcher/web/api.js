// Calls to the JobManager's REST API (same origin). Every failure becomes an ApiError whose
// message names the request and carries the server's own words (the `errors` of its JSON
// body), so a page can show it instead of going blank.

export class ApiError extends Error {
  constructor(method, path, status, message) {
    super(`${method} ${path}: ${status ? `${status} ` : ''}${message}`);
    this.status = status;
    this.reason = message;
  }
}

/**
 * Sends a request and returns the parsed JSON body (null for an empty one). `body` is sent as
 * is when it is a string, else as JSON.
 */
export async function api(path, { method = 'GET', body } = {}) {
  const init = { method, headers: {} };
  if (body !== undefined) {
    init.body = typeof body === 'string' ? body : JSON.stringify(body);
    init.headers['content-type'] = typeof body === 'string' ? 'text/plain' : 'application/json';
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (e) {
    throw new ApiError(method, path, 0, `the JobManager cannot be reached (${e.message})`);
  }
  const text = await response.text();
  let json = null;
  if (text.length > 0) {
    try {
      json = JSON.parse(text);
    } catch {
      json = null;
    }
  }
  if (!response.ok) {
    const reason = Array.isArray(json?.errors) && json.errors.length > 0
      ? json.errors.join('; ')
      : (text.trim() || response.statusText || 'request failed');
    throw new ApiError(method, path, response.status, reason);
  }
  if (json === null && text.length > 0) {
    throw new ApiError(method, path, response.status, 'the answer is not JSON');
  }
  return json;
}
