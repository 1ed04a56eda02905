/**
 * The service's log: one line per event, with a level, to stderr (journald takes it from
 * there). Text by default:
 *
 *   heimdall-xdp: info reload: changed allow, rrl
 *
 * or one JSON object per line with --log-format json, for log pipelines:
 *
 *   {"time":"2026-12-01T17:00:00.000Z","level":"info","event":"reload","msg":"changed allow, rrl"}
 *
 * Events: start, attach (a program replaced), address (served addresses changed),
 * worker (a worker replaced), upstream (down, up again), reload, cache (a flush),
 * control, detach.
 */
export type LogLevel = 'info' | 'warn' | 'error';
export type LogFormat = 'text' | 'json';
export const LOG_FORMATS: readonly LogFormat[] = ['text', 'json'];

let format: LogFormat = 'text';
let sink: (line: string) => void = (line) => process.stderr.write(line);

export function setLogFormat(f: LogFormat): void {
  format = f;
}

/** Where lines go (tests); default stderr. */
export function setLogSink(s: (line: string) => void): void {
  sink = s;
}

export function formatLine(level: LogLevel, event: string, msg: string, fields: Record<string, unknown> = {}, f: LogFormat = format, now = new Date()): string {
  if (f === 'json') return `${JSON.stringify({ time: now.toISOString(), level, event, msg, ...fields })}\n`;
  return `heimdall-xdp: ${level} ${event}: ${msg}\n`;
}

export function log(level: LogLevel, event: string, msg: string, fields?: Record<string, unknown>): void {
  sink(formatLine(level, event, msg, fields));
}

/**
 * The lines an operator reads on the terminal (start-up, program replaced, detach): on
 * stdout as they always were in text format; in JSON format an info event like any other.
 */
export function announce(event: string, msg: string, fields?: Record<string, unknown>): void {
  if (format === 'json') log('info', event, msg, fields);
  else process.stdout.write(`${msg}\n`);
}
