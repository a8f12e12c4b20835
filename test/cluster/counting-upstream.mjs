// An upstream that enforces a rate limit itself, as a provider does, run in a process of its own so that the
// test's load does not delay its clock: it answers 429 (Retry-After: 1) to a request arriving when `limit`
// requests already arrived in the last `window` ms, else 200. GET /stats returns the arrival times and refusals.
// Usage: node counting-upstream.mjs <limit> <window ms>   (prints its port on stdout)
import { createServer } from "node:http";

const [limit, windowMs] = process.argv.slice(2).map(Number);
const arrivals = [];
let refused = 0;
const server = createServer((req, res) => {
  const now = performance.now();
  if (req.url === "/stats") {
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ arrivals, refused }));
    return;
  }
  let inWindow = 0;
  for (let i = arrivals.length - 1; i >= 0 && now - arrivals[i] <= windowMs; i--) inWindow++;
  req.resume();
  if (inWindow >= limit) {
    refused++;
    res.writeHead(429, { "retry-after": "1", "content-type": "application/json" }).end('{"error":"rate limited"}');
    return;
  }
  arrivals.push(now);
  res.writeHead(200, { "content-type": "application/json" }).end('{"ok":true}');
});
server.listen(0, "127.0.0.1", () => console.log(server.address().port));
