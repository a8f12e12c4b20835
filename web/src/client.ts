import { createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { DispatcherService } from "../../gen/dispatcher/v1/dispatcher_pb.js";

const TOKEN_KEY = "dispatcher.token";

/**
 * The bearer token the user typed, kept for the browser tab only
 * (sessionStorage): the page itself loads without auth, its RPCs carry the
 * token like any other client's.
 */
export function storedToken(): string {
  return sessionStorage.getItem(TOKEN_KEY) ?? "";
}

export function storeToken(token: string): void {
  if (token === "") sessionStorage.removeItem(TOKEN_KEY);
  else sessionStorage.setItem(TOKEN_KEY, token);
}

const bearer: Interceptor = (next) => (req) => {
  const token = storedToken();
  if (token !== "") req.header.set("authorization", `Bearer ${token}`);
  return next(req);
};

/**
 * A DispatcherService client over the Connect protocol from the page's own
 * origin, binary encoded: the JSON form omits zero-valued fields and spells
 * enums as strings, the generated types read the binary form as is.
 */
export function dispatcherClient(): Client<typeof DispatcherService> {
  // The folder the page was served from, so the page also works behind a path prefix.
  const baseUrl = new URL(".", location.href).href.replace(/\/$/, "");
  const transport = createConnectTransport({ baseUrl, useBinaryFormat: true, interceptors: [bearer] });
  return createClient(DispatcherService, transport);
}
