// A backend of your own code, loaded by kind "module" (examples/module.yaml):
//   npm start -- --config examples/module.yaml
//   npx buf curl --schema proto --http2-prior-knowledge -d '{"backend":"text","json":{"text":"to be or not"}}' \
//     http://127.0.0.1:8080/dispatcher.v1.DispatcherService/Submit
// "dispatcher" is this package (run `npm run build` first; `npm start` does).
import { setTimeout as sleep } from "node:timers/promises";
import { DispatchError } from "dispatcher";

const started = new Date();

/**
 * Counts the words of `json.text`. Metadata `delay_ms` makes it wait first,
 * `flaky: "true"` fails the first attempt retryably, `crash: "true"` fails
 * as a bug would.
 * @type {import("dispatcher").Handler}
 */
export async function handler(payload, ctx) {
  const text = payload.json?.text;
  if (typeof text !== "string") {
    // A status of your choosing, with a message the caller reads as written.
    throw new DispatchError("invalid_argument", "json.text: expected a string");
  }
  const delay = Number(ctx.metadata.delay_ms ?? 0);
  // Pass ctx.signal to whatever waits: a cancel, the deadline or shutdown then stops the work.
  if (delay > 0) await sleep(delay, undefined, { signal: ctx.signal });
  if (ctx.metadata.flaky === "true" && ctx.attempt === 1) {
    // Nothing was done, so running it again is safe: say so, and a backend with `retry` runs it again.
    throw new DispatchError("unavailable", "warming up; try again", { retryable: true });
  }
  if (ctx.metadata.crash === "true") {
    // Not a DispatchError, no status code: the caller gets INTERNAL "handler failed", the server log this message.
    throw new Error(`cannot read /srv/text/dictionary.txt for ${ctx.workerId}`);
  }
  const words = text.split(/\s+/).filter((w) => w !== "");
  return {
    json: {
      words: words.length,
      longest: words.reduce((a, w) => (w.length > a.length ? w : a), ""),
      servingSince: started, // a Date arrives as its ISO string
      note: undefined, // left out, as JSON.stringify does
    },
    metadata: { attempt: ctx.attempt }, // metadata values are strings on the wire: 2 becomes "2"
  };
}

/** Runs once at shutdown, after the last job: release connections, flush buffers. */
export async function close() {}
