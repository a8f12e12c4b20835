import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type ConnectRouter } from "@connectrpc/connect";
import {
  Health,
  HealthCheckResponseSchema,
  HealthCheckResponse_ServingStatus as Status,
  type HealthCheckResponse,
} from "../../gen/grpc/health/v1/health_pb.js";

/**
 * gRPC health (https://github.com/grpc/grpc/blob/master/doc/health-checking.md):
 * "" is the server as a whole, and each served service has its own entry.
 * Kubernetes' gRPC probes and load balancers call Check; Watch streams changes.
 */
export interface HealthState {
  /** Sets a service's status; Watch streams of that service see the change. */
  set(service: string, serving: boolean): void;
  /** Every service to NOT_SERVING: the first step of a drain, so probes and balancers stop sending. */
  drain(): void;
  /** Ends every Watch stream with UNAVAILABLE, for the end of shutdown. Idempotent. */
  close(): void;
  status(service: string): Status | undefined;
}

class State implements HealthState {
  private readonly statuses = new Map<string, Status>();
  private readonly watchers = new Set<() => void>();
  closed = false;

  set(service: string, serving: boolean): void {
    const next = serving ? Status.SERVING : Status.NOT_SERVING;
    if (this.statuses.get(service) === next) return;
    this.statuses.set(service, next);
    this.notify();
  }

  drain(): void {
    for (const service of this.statuses.keys()) this.statuses.set(service, Status.NOT_SERVING);
    this.notify();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.notify();
  }

  status(service: string): Status | undefined {
    return this.statuses.get(service);
  }

  all(): Map<string, Status> {
    return this.statuses;
  }

  /** Resolves at the next change, close, or abort of `signal`. */
  changed(signal: AbortSignal): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = () => {
        this.watchers.delete(done);
        signal.removeEventListener("abort", done);
        resolve();
      };
      this.watchers.add(done);
      signal.addEventListener("abort", done);
    });
  }

  private notify(): void {
    for (const w of [...this.watchers]) w();
  }
}

/** A health state with `services` (and "") SERVING. */
export function createHealthState(services: readonly string[]): HealthState {
  const s = new State();
  s.set("", true);
  for (const service of services) s.set(service, true);
  return s;
}

function response(status: Status): HealthCheckResponse {
  return create(HealthCheckResponseSchema, { status });
}

export function healthRoutes(state: HealthState) {
  const s = state as State;
  return (router: ConnectRouter) =>
    router.service(Health, {
      check(req) {
        const status = s.status(req.service);
        // The protocol's answer for a service the server does not know.
        if (status === undefined) throw new ConnectError(`unknown service "${req.service}"`, Code.NotFound);
        return response(status);
      },

      list() {
        const statuses: Record<string, HealthCheckResponse> = {};
        for (const [service, status] of s.all()) statuses[service] = response(status);
        return { statuses };
      },

      async *watch(req, ctx) {
        // An unknown service is not an error for Watch: it reports SERVICE_UNKNOWN and waits (it may appear later).
        let last = s.status(req.service) ?? Status.SERVICE_UNKNOWN;
        yield response(last);
        for (;;) {
          await s.changed(ctx.signal);
          ctx.signal.throwIfAborted();
          const now = s.status(req.service) ?? Status.SERVICE_UNKNOWN;
          if (now !== last) {
            last = now;
            yield response(now);
          }
          if (s.closed) throw new ConnectError("the server is shutting down; reconnect to another instance", Code.Unavailable);
        }
      },
    });
}
