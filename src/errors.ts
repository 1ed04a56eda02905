/**
 * Errors with stable codes, in one place. Native calls throw plain Errors carrying
 * `code` (the errno name), `errno` and `syscall`; the CLI turns any of them into one
 * line that says what to do.
 */

export type HeimdallErrorCode =
  | 'E_NOT_BUILT'
  | 'E_NOT_ROOT'
  | 'E_BAD_OPTION'
  | 'E_NOT_HOT_CACHEABLE'
  | 'E_HOT_FULL'
  | 'E_HOT_COLLISION';

export class HeimdallError extends Error {
  readonly code: HeimdallErrorCode;
  constructor(code: HeimdallErrorCode, message: string) {
    super(message);
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
