/**
 * A request's absolute URL from its scheme, authority (`:authority` or
 * `Host`) and path, or undefined when they do not make one. HTTP/2's and
 * HTTP/1.1's parsers let through authorities the URL parser refuses (a port
 * over 65535, a stray "[", a bad percent-escape): building the URL is where
 * such a request must be refused, not where it may throw out of an event
 * handler and take the process down.
 */
export function requestUrl(scheme: string, authority: string, path: string): string | undefined {
  try {
    return new URL(path, `${scheme}://${authority}`).toString();
  } catch {
    return undefined;
  }
}

/** What a client is told when its request's host does not make a URL. */
export const BAD_HOST = "bad request: the request's host (Host or :authority) is missing or not a valid host\n";
