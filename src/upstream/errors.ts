/**
 * Errors of the upstream forwarder, with stable string codes. The caller of
 * Forwarder.resolve answers SERVFAIL for every one of them except
 * UPSTREAM_BAD_QUERY (a programming error on its side) and UPSTREAM_CLOSED
 * (shutdown); codes never change meaning, new ones are only appended. An
 * UpstreamError is a HeimdallError (src/errors.ts) whose `code` is 'UPSTREAM_*'.
 */
import { HeimdallError } from '../errors.js';

export type UpstreamErrorCode =
  /** Every attempt timed out and the deadline passed. */
  | 'UPSTREAM_TIMEOUT'
  /** Attempts failed otherwise (send or connect errors, TCP fallback failing) and no answer came by the deadline. */
  | 'UPSTREAM_FAILED'
  /** Too many distinct questions in flight (maxInflight); nothing was sent. */
  | 'UPSTREAM_BUSY'
  /** The forwarder was closed before an answer came. */
  | 'UPSTREAM_CLOSED'
  /** The question handed to resolve() is not valid (name not a plain wire name, type/class out of range). */
  | 'UPSTREAM_BAD_QUERY'
  /** A configuration value is wrong: an upstream list entry or a forwarder option. */
  | 'UPSTREAM_BAD_CONFIG';

export class UpstreamError extends HeimdallError {
  declare readonly code: UpstreamErrorCode;
  constructor(code: UpstreamErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'UpstreamError';
  }

  /**
   * An outcome of a query rather than a fault of the program (BUSY, TIMEOUT, FAILED):
   * made without a stack trace. Anyone can cause these at a rate (one source's queries
   * past its upstream share, names whose servers never answer), and capturing a stack
   * walks the async frames of every reject; nothing reads it, the code and message say
   * it all.
   */
  static outcome(code: UpstreamErrorCode, message: string, options?: { cause?: unknown }): UpstreamError {
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    try {
      return new UpstreamError(code, message, options);
    } finally {
      Error.stackTraceLimit = limit;
    }
  }
}

export function isUpstreamError(e: unknown): e is UpstreamError {
  return e instanceof UpstreamError;
}
