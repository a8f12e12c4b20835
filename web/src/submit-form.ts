import { create, fromJson, toJson, type JsonValue } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { ConnectError, type Client } from "@connectrpc/connect";
import { SubmitRequestSchema, type DispatcherService } from "../../gen/dispatcher/v1/dispatcher_pb.js";
import { formatMs, ms } from "./workers-view.js";

const byId = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;

/** "key=value" lines into a map; a line without "=" is an error naming it. */
export function parseMetadata(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "") continue;
    const eq = line.indexOf("=");
    if (eq <= 0) throw new Error(`metadata: expected key=value, got "${line}"`);
    out[line.slice(0, eq).trim()] = line.slice(eq + 1).trim();
  }
  return out;
}

/** Wires the Submit form: one unary call per send, the answer (or the gRPC error) shown below it. */
export function wireSubmitForm(client: Client<typeof DispatcherService>): void {
  const form = byId<HTMLFormElement>("submit-form");
  const out = byId<HTMLPreElement>("submit-result");
  const show = (status: string, text: string) => {
    out.dataset["status"] = status;
    out.textContent = text;
  };
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    void (async () => {
      let request;
      try {
        const payloadText = byId<HTMLTextAreaElement>("submit-payload").value.trim();
        request = create(SubmitRequestSchema, {
          backend: byId<HTMLInputElement>("submit-backend").value.trim(),
          sessionId: byId<HTMLInputElement>("submit-session").value.trim(),
          metadata: parseMetadata(byId<HTMLTextAreaElement>("submit-metadata").value),
          payload: payloadText === "" ? { case: undefined } : { case: "json", value: fromJson(ValueSchema, JSON.parse(payloadText) as JsonValue) },
        });
      } catch (e) {
        show("error", `not sent: ${(e as Error).message}`);
        return;
      }
      show("pending", "sending…");
      const started = performance.now();
      try {
        const res = await client.submit(request, { timeoutMs: 60_000 });
        const payload =
          res.payload.case === "json" ? toJson(ValueSchema, res.payload.value) : res.payload.case === "binary" ? `${res.payload.value.length} bytes` : null;
        show(
          "ok",
          JSON.stringify(
            {
              workerId: res.workerId,
              affinity: res.affinity,
              attempts: res.attempts,
              queueWait: formatMs(ms(res.queueWait)),
              execution: formatMs(ms(res.execution)),
              roundTrip: formatMs(performance.now() - started),
              metadata: res.metadata,
              payload,
            },
            null,
            2,
          ),
        );
      } catch (e) {
        const err = ConnectError.from(e);
        show("error", `${err.code === undefined ? "error" : codeName(err.code)}: ${err.rawMessage}`);
      }
    })();
  });
}

const codeNames = [
  "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED",
  "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
];

export function codeName(code: number): string {
  return codeNames[code] ?? `code ${code}`;
}
