/**
 * One DNS-over-TCP exchange with one upstream (RFC 7766): connect, send the
 * length-prefixed query, read length-prefixed messages until the one whose
 * ID and question match. Used when the UDP answer came back with TC=1.
 * The connection carries this one query and is closed after it.
 */
import net from 'node:net';
import { MAX_MESSAGE_LEN } from '../dns/constants.js';
import { MessageView } from '../dns/view.js';
import type { UpstreamAddr } from './upstream.js';
import { Mismatch, matchResponse, type MismatchCode, type Question } from './wire.js';

export interface TcpHooks {
  answer(msg: Uint8Array, view: MessageView): void;
  ignored(reason: MismatchCode): void;
  /** Connect, reset, early close or timeout; `timedOut` tells which. */
  error(err: Error, timedOut: boolean): void;
}

export class TcpExchange {
  private sock: net.Socket | null = null;
  private timer: NodeJS.Timeout | null = null;
  private done = false;
  private chunks: Buffer[] = [];
  private buffered = 0;
  startedAt = 0;

  constructor(
    private readonly addr: UpstreamAddr,
    private readonly wire: Uint8Array,
    private readonly id: number,
    private readonly q: Question,
    private readonly view: MessageView,
    private readonly hooks: TcpHooks,
  ) {}

  start(timeoutMs: number): void {
    this.startedAt = performance.now();
    const frame = Buffer.allocUnsafe(2 + this.wire.length);
    frame.writeUInt16BE(this.wire.length, 0);
    frame.set(this.wire, 2);
    const sock = net.connect({ host: this.addr.host, port: this.addr.port, family: this.addr.family, noDelay: true });
    this.sock = sock;
    this.timer = setTimeout(() => this.fail(new Error(`TCP to ${this.addr.host}:${this.addr.port} timed out`), true), timeoutMs);
    sock.on('connect', () => sock.write(frame));
    sock.on('data', (d: Buffer) => this.onData(d));
    sock.on('error', (err) => this.fail(err, false));
    sock.on('close', () => this.fail(new Error(`TCP to ${this.addr.host}:${this.addr.port} closed before the answer`), false));
  }

  private onData(d: Buffer): void {
    if (this.done) return;
    this.chunks.push(d);
    this.buffered += d.length;
    for (;;) {
      if (this.buffered < 2) return;
      let all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.buffered);
      const len = all.readUInt16BE(0);
      if (this.buffered < 2 + len) {
        this.chunks = [all];
        return;
      }
      const msg = all.subarray(2, 2 + len);
      all = all.subarray(2 + len);
      this.chunks = all.length > 0 ? [all] : [];
      this.buffered = all.length;
      const r = len > MAX_MESSAGE_LEN ? Mismatch.MALFORMED : matchResponse(this.view, msg, this.id, this.q);
      if (r === Mismatch.NONE) {
        this.finish();
        this.hooks.answer(msg, this.view);
        return;
      }
      this.hooks.ignored(r);
    }
  }

  private finish(): void {
    this.done = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const s = this.sock;
    this.sock = null;
    s?.destroy();
  }

  private fail(err: Error, timedOut: boolean): void {
    if (this.done) return;
    this.finish();
    this.hooks.error(err, timedOut);
  }

  /** Aborts without calling any hook. Idempotent. */
  close(): void {
    if (!this.done) this.finish();
  }
}
