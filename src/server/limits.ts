/** Request limits: each bounds what one caller can make the server hold or parse. */
export interface Limits {
  /** Largest request message, in bytes; larger gets RESOURCE_EXHAUSTED. Default 4 MiB, as grpc-js clients' default receive limit. */
  maxRequestBytes: number;
  /** Longest session_id, in UTF-16 code units. Default 256: session keys are ids, and every pin holds its key. */
  maxSessionIdLength: number;
  /** Most metadata entries per request. Default 64. */
  maxMetadataEntries: number;
  /** Total length of metadata keys and values per request. Default 16 KiB. */
  maxMetadataSize: number;
}

export const defaultLimits: Limits = {
  maxRequestBytes: 4 * 1024 * 1024,
  maxSessionIdLength: 256,
  maxMetadataEntries: 64,
  maxMetadataSize: 16 * 1024,
};
