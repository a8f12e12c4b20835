/**
 * The package's public API: `import { … } from "dispatcher"` (after `npm run build`).
 *
 * - Writing a `module` backend: throw `DispatchError` to choose the status,
 *   type the handler with `Handler`, `HandlerContext`, `HandlerResult`.
 * - Embedding the core: `createDispatcher` and its option and result types;
 *   no server, config or protobuf involved.
 * - Running the whole service in-process: `loadConfig`/`validateConfig` then
 *   `startApp`; `registerBackendKind` adds a kind the config file can name.
 *
 * Anything not exported here is internal and may change.
 */
export { createDispatcher, DispatchError } from "./core/index.js";
export type {
  AffinityOptions,
  BackendOptions,
  Dispatcher,
  DispatcherOptions,
  DispatchErrorOptions,
  DispatchObserver,
  ErrorCode,
  Handler,
  HandlerContext,
  HandlerResult,
  JobResult,
  OutlierOptions,
  Payload,
  RetryOptions,
  SubmitOptions,
  WorkerOptions,
  WorkerSnapshot,
} from "./core/index.js";
export { startApp, type App, type AppHooks } from "./app.js";
export { loadConfig, validateConfig, type Config } from "./config.js";
export { registerBackendKind, type BackendInstance, type BackendKind, type KindContext } from "./backends/registry.js";
export type { BackendLog } from "./backends/log.js";
