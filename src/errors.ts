/**
 * Errors with stable codes, in one place. Every error heimdall-xdp throws on purpose is a
 * HeimdallError: the service's own (`E_*`, below), the DNS core's (`ERR_DNS_*`, a
 * DnsError from src/dns/errors.ts) and the forwarder's (`UPSTREAM_*`, an UpstreamError
 * from src/upstream/errors.ts) all extend it, so a caller tells them apart by `code`
 * alone. Codes never change meaning; new ones are only added.
 *
 * The addon throws plain Errors carrying `code` (the errno name), `errno` and `syscall`
 * (addon/errors.cc); `isNativeError` recognises them. The CLI turns any of these into
 * one line that says what to do.
 */

export type ServiceErrorCode =
  /** The addon or BPF object is missing: run the build. */
  | 'E_NOT_BUILT'
  /** Not root (or without the capabilities XDP needs). */
  | 'E_NOT_ROOT'
  /** An option or config value is wrong; the message names it. */
  | 'E_BAD_OPTION'
  /** A port the service binds is taken. */
  | 'E_PORT_IN_USE'
  /** A bind or load was refused for lack of privilege. */
  | 'E_PERMISSION'
  /** No configured upstream answered the start-up probe. */
  | 'E_NO_UPSTREAM'
  /** A worker could not start or died before it was ready. */
  | 'E_WORKER'
  /** An answer the hot map cannot hold (too large, too many records, a long name). */
  | 'E_NOT_HOT_CACHEABLE'
  /** The hot map has no free slot. */
  | 'E_HOT_FULL'
  /** Another name already holds the hot map key (a 64-bit hash collision). */
  | 'E_HOT_COLLISION'
  /** Another live heimdall-xdp serves the interface. */
  | 'E_IFACE_OWNED'
  /** The interface has no address to serve (and no --listen was given). */
  | 'E_NO_ADDRESS';

/** Every code: the service's own, the DNS core's and the forwarder's families. */
export type ErrorCode = ServiceErrorCode | `ERR_DNS_${string}` | `UPSTREAM_${string}`;

export class HeimdallError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'HeimdallError';
    this.code = code;
  }
}

/** An Error from the addon: errno name, number and the failing call. */
export interface NativeError extends Error {
  code: string;
  errno: number;
  syscall: string;
  log?: string;
}

export function isNativeError(e: unknown): e is NativeError {
  return e instanceof Error && typeof (e as NativeError).errno === 'number' && typeof (e as NativeError).syscall === 'string';
}

/** One line for an operator: the message, and for native errors the failing call. */
export function operatorMessage(e: unknown): string {
  if (e instanceof HeimdallError) return e.message;
  if (isNativeError(e)) return `${e.message} [${e.code} in ${e.syscall}]`;
  if (e instanceof Error) return e.message;
  return String(e);
}
