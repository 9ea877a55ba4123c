// Thin client for the kestrel HTTP API: the token, JSON requests and the server's errors.

const TOKEN_KEY = 'kestrel.token';

function readToken(): string | null {
  const fromUrl = new URLSearchParams(location.search).get('token');
  if (fromUrl) {
    try { sessionStorage.setItem(TOKEN_KEY, fromUrl); } catch { /* storage may be disabled */ }
    return fromUrl;
  }
  try { return sessionStorage.getItem(TOKEN_KEY); } catch { return null; }
}

export const token: string | null = readToken();

/** An error answered by the server: its HTTP status, its `error` text and the whole body. */
export class ApiError extends Error {
  constructor(public status: number, message: string, public body: any) {
    super(message);
  }
}

/** The URL with the token added as a query parameter (for <img>, tiles and EventSource). */
export function withToken(url: string): string {
  if (!token) return url;
  return url + (url.includes('?') ? '&' : '?') + 'token=' + encodeURIComponent(token);
}

export async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = {};
  if (token) headers['Authorization'] = 'Bearer ' + token;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let res: Response;
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw new ApiError(0, `cannot reach the server (${method} ${path}): ${(e as Error).message}`, null);
  }
  if (res.status === 204) return undefined as T;
  const text = await res.text();
  let parsed: any = null;
  if (text) {
    try { parsed = JSON.parse(text); } catch { parsed = text; }
  }
  if (!res.ok) {
    const msg = parsed && typeof parsed === 'object' && typeof parsed.error === 'string'
      ? parsed.error
      : `${method} ${path} failed: HTTP ${res.status}${typeof parsed === 'string' && parsed ? ' ' + parsed.slice(0, 200) : ''}`;
    throw new ApiError(res.status, msg, parsed);
  }
  return parsed as T;
}

export const get = <T>(path: string) => api<T>('GET', path);
export const post = <T>(path: string, body?: unknown) => api<T>('POST', path, body ?? {});
export const put = <T>(path: string, body: unknown) => api<T>('PUT', path, body);
export const patch = <T>(path: string, body: unknown) => api<T>('PATCH', path, body);
export const del = <T>(path: string) => api<T>('DELETE', path);
