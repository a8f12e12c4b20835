import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { WorkerMetricsRequestSchema } from "../../gen/dispatcher/v1/dispatcher_pb.js";
import { dispatcherClient, storedToken, storeToken } from "./client.js";
import { codeName, wireSubmitForm } from "./submit-form.js";
import { createWorkersView } from "./workers-view.js";

const byId = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;

/** Twice a second: live enough to watch a queue fill, one shared snapshot per tick on the server. */
const INTERVAL_MS = 500;
/** Wait before re-subscribing after the stream ends (restart, network). */
const RETRY_MS = 2_000;

const client = dispatcherClient();
const conn = byId("conn");
const view = createWorkersView(byId("summary"), byId("backends"), byId("updated"));
const names = byId<HTMLDataListElement>("backend-names");
let stream: AbortController | undefined;

function status(state: string, text: string): void {
  conn.dataset["state"] = state;
  conn.textContent = text;
}

/** Subscribes to WorkerMetrics and renders every message; re-subscribes after errors unless auth failed. */
async function subscribe(): Promise<void> {
  stream?.abort();
  const ctl = new AbortController();
  stream = ctl;
  status("connecting", "connecting…");
  try {
    const request = create(WorkerMetricsRequestSchema, { interval: { seconds: 0n, nanos: INTERVAL_MS * 1e6 } });
    for await (const m of client.workerMetrics(request, { signal: ctl.signal })) {
      status("live", "live");
      view.render(m);
      if (names.childElementCount !== view.backends.length) {
        names.innerHTML = view.backends.map((b) => `<option value="${b.replace(/"/g, "&quot;")}">`).join("");
      }
    }
    status("error", "stream ended; reconnecting…");
  } catch (e) {
    if (ctl.signal.aborted) return;
    const err = ConnectError.from(e);
    if (err.code === Code.Unauthenticated || err.code === Code.PermissionDenied) {
      // Retrying without a new token would only repeat the refusal.
      status("unauthenticated", `${codeName(err.code)}: enter a bearer token`);
      return;
    }
    status("error", `${codeName(err.code)}: ${err.rawMessage}; reconnecting…`);
  }
  if (stream === ctl) setTimeout(() => void (stream === ctl && subscribe()), RETRY_MS);
}

const token = byId<HTMLInputElement>("token");
token.value = storedToken();
byId<HTMLFormElement>("token-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  storeToken(token.value.trim());
  void subscribe();
});

wireSubmitForm(client);
void subscribe();
