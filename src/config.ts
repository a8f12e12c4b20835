/**
 * The service's configuration: the file's schema and rules (src/config/),
 * loaded from a YAML or JSON file, environment variables and flags.
 */
export type { AuthConfig, BackendConfig, ClusterConfig, Config, JobsConfig, LogConfig, OutlierConfig, ServerConfig, TelemetryConfig, TlsConfig, WorkerConfig } from "./config/types.js";
export { defaultConfigFile, loadConfig, type Overrides } from "./config/load.js";
export { validateConfig } from "./config/validate.js";
export { ConfigError } from "./config/errors.js";
export { checkBackendKinds, checkSecrets } from "./config/preflight.js";
export { logLevels } from "./config/fields.js";
