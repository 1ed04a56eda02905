/**
 * The control socket: how the CLI talks to a running `attach`, as unbound-control and
 * knotc do. One Unix stream socket per interface, /run/heimdall-xdp/<iface>.sock, in a
 * directory only its owner's user and group may enter (0750), the socket itself 0660:
 * root, or the service's user and group, may use it; nobody else can even find it.
 *
 * The protocol is one JSON line each way: { "cmd": "reload", ...args } and then
 * { "ok": true, ... } or { "ok": false, "error": "one line saying what is wrong" }.
 *
 * The interface's owner is still the abstract socket of src/edge/owner.ts (it proves
 * the owner alive however it ended); this file is created after that claim is held, so
 * a socket file left by a killed process is replaced, never a live one's.
 */
import { chmodSync, mkdirSync, statSync, unlinkSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { HeimdallError } from '../errors.js';

/**
 * Where the sockets are: /run/heimdall-xdp (the systemd unit's RuntimeDirectory), or
 * HEIMDALL_XDP_RUN_DIR (tests, or a service user without a unit).
 */
export const CONTROL_DIR = process.env.HEIMDALL_XDP_RUN_DIR ?? '/run/heimdall-xdp';
/** A request line longer than this is refused (nothing the CLI sends comes close). */
const MAX_LINE = 64 * 1024;
const CLIENT_TIMEOUT_MS = 15_000;
const REQUEST_TIMEOUT_MS = 30_000;

export function controlPath(iface: string, dir = CONTROL_DIR): string {
  return join(dir, `${iface}.sock`);
}

export type ControlRequest = { cmd: string } & Record<string, unknown>;
export type ControlHandler = (req: ControlRequest) => Promise<Record<string, unknown>>;

export interface ControlServer {
  readonly path: string;
  close(): Promise<void>;
}

/** Serves the control socket of iface; `handlers` answer each command. */
export async function serveControl(iface: string, handlers: Record<string, ControlHandler>, dir = CONTROL_DIR): Promise<ControlServer> {
  mkdirSync(dir, { recursive: true, mode: 0o750 });
  // Ours (made here, or the unit's RuntimeDirectory): no one else may enter it. Another
  // owner's directory is left as that owner set it.
  if (statSync(dir).uid === process.getuid?.()) chmodSync(dir, 0o750);
  const path = controlPath(iface, dir);
  try {
    unlinkSync(path); // left by a process that was killed: we hold the interface now
  } catch {
    /* none */
  }
  const server = net.createServer((c) => {
    let buf = '';
    c.setEncoding('utf8');
    c.setTimeout(REQUEST_TIMEOUT_MS, () => c.destroy()); // a client that never finishes its line
    c.on('error', () => c.destroy());
    c.on('data', (d: string) => {
      buf += d;
      if (buf.length > MAX_LINE) {
        c.end(`${JSON.stringify({ ok: false, error: 'request too long' })}\n`);
        return;
      }
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      const line = buf.slice(0, nl);
      buf = '';
      void answer(line).then((reply) => c.end(`${JSON.stringify(reply)}\n`));
    });
  });
  async function answer(line: string): Promise<Record<string, unknown>> {
    let req: ControlRequest;
    try {
      req = JSON.parse(line) as ControlRequest;
    } catch {
      return { ok: false, error: 'not a JSON request' };
    }
    const h = typeof req?.cmd === 'string' && Object.hasOwn(handlers, req.cmd) ? handlers[req.cmd] : undefined;
    if (!h) return { ok: false, error: `unknown command '${String(req?.cmd)}' (known: ${Object.keys(handlers).join(', ')})` };
    try {
      return { ok: true, ...(await h(req)) };
    } catch (e) {
      return { ok: false, error: (e as Error).message };
    }
  }
  const old = process.umask(0o117); // the socket is created 0660
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => resolve());
    });
  } finally {
    process.umask(old);
  }
  chmodSync(path, 0o660);
  server.unref();
  return {
    path,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        try {
          unlinkSync(path);
        } catch {
          /* gone */
        }
      }),
  };
}

/** Sends one request to iface's service and returns its reply; throws one clear line. */
export async function controlRequest(iface: string, req: ControlRequest, dir = CONTROL_DIR): Promise<Record<string, unknown>> {
  const path = controlPath(iface, dir);
  const reply = await new Promise<string>((resolve, reject) => {
    const c = net.connect(path);
    let text = '';
    c.setEncoding('utf8');
    c.setTimeout(CLIENT_TIMEOUT_MS, () => {
      c.destroy();
      reject(new HeimdallError('E_NOT_RUNNING', `the service on '${iface}' did not answer within ${CLIENT_TIMEOUT_MS / 1000} s`));
    });
    c.on('connect', () => c.write(`${JSON.stringify(req)}\n`));
    c.on('data', (d: string) => (text += d));
    c.on('end', () => resolve(text));
    c.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT' || e.code === 'ECONNREFUSED') reject(new HeimdallError('E_NOT_RUNNING', `no heimdall-xdp serves '${iface}' (no control socket ${path})`));
      else if (e.code === 'EACCES') reject(new HeimdallError('E_PERMISSION', `cannot use ${path}: permission denied (run as root or as the service's user or group)`));
      else reject(e);
    });
  });
  let parsed: Record<string, unknown>;
  try {
    parsed = JSON.parse(reply) as Record<string, unknown>;
  } catch {
    throw new HeimdallError('E_NOT_RUNNING', `the service on '${iface}' gave no answer`);
  }
  if (parsed.ok !== true) throw new HeimdallError('E_CONTROL', String(parsed.error ?? 'request failed'));
  return parsed;
}
