/**
 * The logger a backend writes to: the subset of pino's API it uses, so a
 * pino Logger fits as is and the backends need not import pino. What a
 * client must not see (an upstream's error body, a handler's own error
 * message and stack) goes here instead.
 */
export interface BackendLog {
  error(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  debug(obj: object, msg?: string): void;
}

const noop = (): void => undefined;

/** The default: embedding the backends without a logger must not print. */
export const noopLog: BackendLog = { error: noop, warn: noop, info: noop, debug: noop };
