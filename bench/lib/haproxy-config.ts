/**
 * The HAProxy config of the tests and the bench: examples/cluster/haproxy.cfg
 * with generated ports and faster health checks. h2c in, h2c to each replica,
 * the session header hashed consistently with bounded load.
 */
export interface HaproxyOptions {
  /** The replicas' gRPC ports, named r0, r1, … in order. */
  servers: readonly number[];
  /** hash-balance-factor: a replica takes at most this % of the mean load before it sheds calls. Default 150; 0 leaves it out. */
  hashBalanceFactor?: number;
}

export function haproxyConfig(port: number, o: HaproxyOptions): string {
  const servers = o.servers.map((p, i) => `  server r${i} 127.0.0.1:${p} weight 100 proto h2 check check-proto h1 inter 200ms fall 1 rise 2`);
  return [
    "global",
    "  maxconn 4096",
    "defaults",
    "  mode http",
    "  timeout connect 1s",
    "  timeout client 60s",
    "  timeout server 60s",
    // A call that found its replica dead (connection refused) is sent to another one.
    "  retries 2",
    "  option redispatch 1",
    "frontend grpc",
    `  bind 127.0.0.1:${port} proto h2`,
    "  default_backend replicas",
    "backend replicas",
    "  balance hdr(dispatcher-session)",
    "  hash-type consistent",
    ...(o.hashBalanceFactor === 0 ? [] : [`  hash-balance-factor ${o.hashBalanceFactor ?? 150}`]),
    // The gRPC health service, asked in the Connect protocol (JSON over HTTP/1.1, which the service also serves):
    // NOT_SERVING (a draining replica) takes it out. HAProxy 2.6 cannot send a gRPC frame's binary body.
    "  option httpchk",
    "  http-check send meth POST uri /grpc.health.v1.Health/Check ver HTTP/1.1 hdr host localhost hdr content-type application/json body {}",
    `  http-check expect rstring "status\\":\\"SERVING"`,
    ...servers,
    "",
  ].join("\n");
}

