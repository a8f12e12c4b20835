// A stand-in for an OpenAI-compatible chat server, to try streaming without one:
//   node examples/fake-llm.mjs [--port 8000] [--ttft-ms 200] [--token-ms 30]
// POST /v1/chat/completions answers with the last user message's words,
// one token each, as server-sent events when the request has "stream": true
// (with a final usage chunk when stream_options.include_usage is set), or as
// one JSON completion otherwise. It logs each request and when its client
// goes away, so a cancel's effect is visible.
import * as http from "node:http";
import { parseArgs } from "node:util";
import { pathToFileURL } from "node:url";

/** Starts the fake server; resolves with its URL and a close function. */
export async function startFakeLlm({ port = 0, host = "127.0.0.1", ttftMs = 200, tokenMs = 30, log = () => {} } = {}) {
  const server = http.createServer((req, res) => {
    if (req.method !== "POST" || !req.url?.startsWith("/v1/chat/completions")) {
      res.writeHead(404, { "content-type": "application/json" }).end('{"error":{"message":"not found"}}');
      return;
    }
    const parts = [];
    req.on("data", (c) => parts.push(c));
    req.on("end", () => {
      let body;
      try {
        body = JSON.parse(Buffer.concat(parts).toString() || "{}");
      } catch {
        res.writeHead(400, { "content-type": "application/json" }).end('{"error":{"message":"body is not JSON"}}');
        return;
      }
      const last = [...(body.messages ?? [])].reverse().find((m) => m.role === "user");
      const words = String(last?.content ?? "hello from the fake model").split(/(?<=\s)/);
      const model = body.model ?? "fake";
      const usage = { prompt_tokens: 5, completion_tokens: words.length, total_tokens: 5 + words.length };
      log(`request: ${words.length} tokens, stream ${body.stream === true}`);
      if (body.stream !== true) {
        setTimeout(() => {
          res.writeHead(200, { "content-type": "application/json" });
          res.end(JSON.stringify({ id: "fake-1", object: "chat.completion", model, choices: [{ index: 0, message: { role: "assistant", content: words.join("") }, finish_reason: "stop" }], usage }));
        }, ttftMs + tokenMs * words.length);
        return;
      }
      res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
      const send = (o) => res.write(`data: ${JSON.stringify(o)}\n\n`);
      const chunk = (delta, finish = null) => ({ id: "fake-1", object: "chat.completion.chunk", model, choices: [{ index: 0, delta, finish_reason: finish }] });
      let i = 0;
      let timer;
      const next = () => {
        if (i < words.length) {
          send(chunk(i === 0 ? { role: "assistant", content: words[i] } : { content: words[i] }));
          i++;
          timer = setTimeout(next, tokenMs);
          return;
        }
        send(chunk({}, "stop"));
        if (body.stream_options?.include_usage) send({ id: "fake-1", object: "chat.completion.chunk", model, choices: [], usage });
        res.end("data: [DONE]\n\n");
      };
      timer = setTimeout(next, ttftMs);
      res.on("close", () => {
        clearTimeout(timer);
        if (!res.writableFinished) log(`client went away after ${i} tokens`);
      });
    });
  });
  // Longer than a keep-alive client's own idle timeout, so the client closes an idle connection first:
  // a server closing one as the client reuses it is a reset the client did not cause.
  server.keepAliveTimeout = 65_000;
  await new Promise((resolve) => server.listen(port, host, resolve));
  const url = `http://${host}:${server.address().port}`;
  return {
    url,
    close: () => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(resolve));
    },
  };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const { values } = parseArgs({ options: { port: { type: "string" }, "ttft-ms": { type: "string" }, "token-ms": { type: "string" } } });
  const fake = await startFakeLlm({
    port: Number(values.port ?? 8000),
    ttftMs: Number(values["ttft-ms"] ?? 200),
    tokenMs: Number(values["token-ms"] ?? 30),
    log: (line) => console.log(line),
  });
  console.log(`fake OpenAI-compatible server at ${fake.url}/v1/chat/completions`);
}
