// A tiny upstream to try the http and genai backends against; no dependencies.
//   node examples/upstream.mjs            # listens on 127.0.0.1:9000 and :9001
//   PORTS=9000 node examples/upstream.mjs
// POST /echo                  answers {"echo": <request body>, "served_by": <port>}
// POST /v1/chat/completions   answers like an OpenAI-compatible server, with usage
// Any path answers ?status=503 (and &retry_after=2) with that status, to try error mapping and retries.
import * as http from "node:http";

const ports = (process.env.PORTS ?? "9000,9001").split(",").map(Number);

function handle(port) {
  return (req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const url = new URL(req.url, "http://x");
      const body = Buffer.concat(chunks);
      const send = (status, value, headers = {}) => {
        res.writeHead(status, { "content-type": "application/json", ...headers });
        res.end(JSON.stringify(value));
      };
      const status = Number(url.searchParams.get("status") ?? 200);
      if (status !== 200) {
        const retryAfter = url.searchParams.get("retry_after");
        return send(status, { error: `asked for ${status}` }, retryAfter ? { "retry-after": retryAfter } : {});
      }
      if (req.method !== "POST") return send(405, { error: "POST only" });
      if (url.pathname === "/echo") {
        let echo;
        try {
          echo = JSON.parse(body.toString("utf8"));
        } catch {
          echo = body.toString("base64");
        }
        return send(200, { echo, served_by: port });
      }
      if (url.pathname === "/v1/chat/completions") {
        let request;
        try {
          request = JSON.parse(body.toString("utf8"));
        } catch {
          return send(400, { error: { message: "body is not JSON" } });
        }
        const last = request.messages?.at?.(-1)?.content ?? "";
        const prompt = JSON.stringify(request.messages ?? []).length;
        return send(200, {
          id: `chatcmpl-${Date.now()}`,
          object: "chat.completion",
          created: Math.floor(Date.now() / 1000),
          model: request.model ?? "example",
          choices: [{ index: 0, message: { role: "assistant", content: `(${port}) you said: ${last}` }, finish_reason: "stop" }],
          usage: { prompt_tokens: Math.ceil(prompt / 4), completion_tokens: 6, total_tokens: Math.ceil(prompt / 4) + 6 },
        });
      }
      send(404, { error: `no route ${url.pathname}` });
    });
  };
}

for (const port of ports) {
  http.createServer(handle(port)).listen(port, "127.0.0.1", () => console.log(`example upstream on http://127.0.0.1:${port}`));
}
