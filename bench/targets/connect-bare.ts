// Target (a): a bare connect-node server on the same proto, with a no-op Submit
// that answers with the request's payload (so the bytes on the wire match the dispatcher's echo).
import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { DispatcherService } from "../../gen/dispatcher/v1/dispatcher_pb.js";
import { reportReady } from "./ipc.js";

const server = http2.createServer(
  {},
  connectNodeAdapter({
    routes: (router) =>
      router.service(DispatcherService, {
        submit: (req) => ({ payload: req.payload }),
      }),
  }),
);
const sessions = new Set<http2.ServerHttp2Session>();
server.on("session", (s) => {
  sessions.add(s);
  s.once("close", () => sessions.delete(s));
});
server.listen(0, "127.0.0.1", () => {
  reportReady((server.address() as AddressInfo).port, async () => {
    for (const s of sessions) s.destroy();
    server.close();
  });
});
