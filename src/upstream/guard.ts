/**
 * Per-upstream defences against forged answers beyond port and ID: 0x20 case
 * randomisation of the query name and DNS cookies (RFC 7873, RFC 9018). One
 * UpstreamGuard per configured upstream; the forwarder asks it for the question
 * to send (`prepare`) and tells it what came back (`answered`, `mismatched`).
 *
 * 0x20: every letter of the name goes out in a random case, and only an answer that
 * echoes the name byte for byte is taken (wire.ts, Mismatch.CASE). An upstream that
 * does not preserve case shows as CASE mismatches with no exactly echoed answer in
 * between (counted across questions): after CAPS_MISSES of them in a row the guard
 * sends that upstream plain names for CAPS_OFF_MS, then tries the random case again
 * (one more run of misses turns it off again). A single CASE mismatch does not end the
 * attempt (the real answer may still come: a forger must not be able to hurry us on);
 * the switch to plain names does, so a non-preserving upstream costs its first
 * questions one attempt timeout, not the deadline.
 *
 * Cookies: a random 8-byte client cookie per upstream (not linkable across upstreams
 * or restarts), sent in every query with the server cookie last learned from that
 * upstream. An answer with a COOKIE option must echo our client cookie and carry a
 * server cookie of 8-32 bytes, or it is refused (Mismatch.COOKIE); the server cookie
 * of every accepted answer is kept. Once an upstream has given a server cookie, an
 * answer without one is refused too; after COOKIE_MISSES such refusals in a row with no
 * good answer between, the guard concludes the upstream stopped doing cookies
 * (replaced, or an anycast node without them), forgets its server cookie, and the
 * forwarder asks again at once.
 */
import { randomFillSync } from 'node:crypto';
import type { MessageView } from '../dns/view.js';
import { randomU16 } from './random.js';
import { CLIENT_COOKIE_LEN, Mismatch, findCookie, type MismatchCode, type Question } from './wire.js';

/** CASE mismatches in a row, with no exactly echoed answer, before plain names are sent. */
export const CAPS_MISSES = 2;
/** How long an upstream that did not preserve case gets plain names before trying again. */
export const CAPS_OFF_MS = 5 * 60_000;
/** Answers without a cookie in a row from an upstream that gave one before we forget it. */
export const COOKIE_MISSES = 2;

export interface GuardOptions {
  /** Randomise the case of query names (default true). */
  caps?: boolean;
  /** Send and check DNS cookies (default true). */
  cookies?: boolean;
}

export interface GuardStats {
  /** Times this upstream was switched to plain names. */
  capsFallbacks: number;
  /** Plain names now (until the time is up). */
  capsOff: boolean;
  /** A server cookie is known. */
  serverCookie: boolean;
  /** Times a server cookie was forgotten after answers without one. */
  cookieResets: number;
}


export class UpstreamGuard {
  private readonly caps: boolean;
  private readonly cookies: boolean;
  private readonly clientCookie = new Uint8Array(CLIENT_COOKIE_LEN);
  private serverCookie: Uint8Array | undefined;
  private capsMisses = 0;
  private capsOffUntil = 0;
  private cookieMisses = 0;
  capsFallbacks = 0;
  cookieResets = 0;

  constructor(opts: GuardOptions = {}) {
    this.caps = opts.caps ?? true;
    this.cookies = opts.cookies ?? true;
    randomFillSync(this.clientCookie);
  }

  /** Whether names to this upstream are randomised now. */
  capsOn(now: number): boolean {
    return this.caps && now >= this.capsOffUntil;
  }

  /**
   * The question to send this upstream: `q` with the name in random case (a fresh
   * copy) unless plain names are due, and the cookies. `tcp`: no case randomisation
   * (a forged TCP answer needs the connection's sequence numbers, and a retry over TCP
   * should not fail on an upstream's case handling).
   */
  prepare(q: Question, now: number, tcp = false): Question {
    const out: Question = { name: q.name, qtype: q.qtype, qclass: q.qclass, dnssecOk: q.dnssecOk, checkingDisabled: q.checkingDisabled };
    if (!tcp && this.capsOn(now)) {
      const n = q.name.length;
      const name = new Uint8Array(n);
      // One CSPRNG bit per byte, 16 at a time from random.ts's batch (a randomFillSync
      // per query cost more than the rest of the query's build: docs/BENCHMARKS.md).
      let bits = 0;
      for (let i = 0; i < n; i++) {
        if ((i & 15) === 0) bits = randomU16();
        const c = q.name[i]!;
        const lower = c | 0x20;
        // Letters only (length bytes are below 0x40 and are never touched).
        name[i] = lower >= 0x61 && lower <= 0x7a && c >= 0x41 ? ((bits >>> (i & 15)) & 1 ? lower & 0xdf : lower) : c;
      }
      out.name = name;
      out.exactCase = true;
    }
    if (this.cookies) {
      out.clientCookie = this.clientCookie;
      out.serverCookie = this.serverCookie;
      out.cookieRequired = this.serverCookie !== undefined;
    }
    return out;
  }

  /** A matched answer from this upstream (view holds it): keep its server cookie. */
  answered(view: MessageView, sent: Question): void {
    if (sent.exactCase === true) this.capsMisses = 0;
    if (!this.cookies || sent.clientCookie === undefined) return;
    this.cookieMisses = 0;
    const c = findCookie(view);
    if (c !== null) this.serverCookie = view.buf.slice(c.pos + CLIENT_COOKIE_LEN, c.pos + c.len);
  }

  /**
   * A datagram from this upstream that was not taken. Returns true when the guard
   * changed what it sends (plain names now, or the server cookie forgotten), so that
   * asking again at once may succeed.
   */
  mismatched(reason: MismatchCode, now: number): boolean {
    if (reason === Mismatch.CASE) {
      if (++this.capsMisses >= CAPS_MISSES) {
        this.capsMisses = 0;
        this.capsOffUntil = now + CAPS_OFF_MS;
        this.capsFallbacks++;
        return true;
      }
      return false;
    }
    if (reason === Mismatch.NO_COOKIE && ++this.cookieMisses >= COOKIE_MISSES) {
      this.cookieMisses = 0;
      this.serverCookie = undefined;
      this.cookieResets++;
      return true;
    }
    return false;
  }

  stats(now: number): GuardStats {
    return { capsFallbacks: this.capsFallbacks, capsOff: this.caps && !this.capsOn(now), serverCookie: this.serverCookie !== undefined, cookieResets: this.cookieResets };
  }
}
