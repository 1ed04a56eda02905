/**
 * The upstream forwarder: resolves one question at a time against the
 * configured upstreams over kernel UDP sockets, with a bounded total time.
 *
 *   resolve(q, client) ── maxWaiting waiting, or the client's prefix at maxWaitingPerClient
 *        │                   of them ──► UPSTREAM_BUSY at once (counted by limit)
 *        ├─ same question in flight? ── yes: wait for it (coalesced)
 *        │ no
 *        ├─ this engine at maxInflight, the client's prefix at maxPerClient here or at
 *        │  its share of the process (budget.ts), or the process at its shared limit
 *        │  ──► UPSTREAM_BUSY at once (counted by limit)
 *        ▼
 *   attempt: pick upstream (health.ts), a random-port socket of the pool (udp.ts: a socket
 *            carries ≤ portReuse queries, ≤ 1 s), a random ID free on it,
 *            send, wait min(timeoutMs, time left)
 *        │ timeout / error ─────────────► next attempt (next upstream first); the
 *        │                                 previous socket stays open for a late answer
 *        │ validated answer (source, ID, question; MessageView well-formed)
 *        ├─ TC=1 ─► same query over TCP to the same upstream, on its pool of reused,
 *        │          pipelined connections (tcp-pool.ts); pool full: the TC answer
 *        ├─ REFUSED/NOTIMP/FORMERR ─► kept; another upstream is tried if one is left
 *        ▼
 *   resolve every waiter with the upstream's message (each its own copy)
 *
 * At the deadline (default 4 s) the waiters are rejected with an
 * UpstreamError and the caller answers SERVFAIL. Only what this class
 * resolves with may be cached: it is always a response that a configured
 * upstream sent to the port and ID of our query, for the question asked.
 *
 * One file for one state machine: a flight's attempts, timers, TCP retry and waiters
 * change together, and splitting them would put one flight's state in several places.
 * The parts that stand alone are beside it (wire.ts, udp.ts, tcp-pool.ts, health.ts, budget.ts).
 */
import { RCODE_BADCOOKIE, RCODE_FORMERR, RCODE_NOTIMP, RCODE_REFUSED, RCODE_SERVFAIL } from '../dns/constants.js';
import { scrubResponse } from '../dns/scrub.js';
import { MessageView } from '../dns/view.js';
import { UpstreamGuard } from './guard.js';
import { UpstreamError, type UpstreamErrorCode } from './errors.js';
import { pickUpstream, resolveHealthOptions, UpstreamHealth, type HealthOptions, type UpstreamStats } from './health.js';
import { kernelPortRange, type PortRange } from './random.js';
import type { InflightShare } from './budget.js';
import { TcpPool, type TcpPoolOptions, type TcpQuery } from './tcp-pool.js';
import { UdpExchange, UdpPool } from './udp.js';
import { checkUpstreamAddr, type UpstreamAddr } from './upstream.js';
import { buildQuery, checkQuestion, checkUdpSize, Mismatch, questionKey, type MismatchCode, type Question } from './wire.js';

export type { Question } from './wire.js';

export interface ForwarderOptions {
  upstreams: UpstreamAddr[];
  /** Per attempt, ms (default 1000). */
  timeoutMs?: number;
  /** Total budget per question, ms (default 4000); the caller's SERVFAIL goes out before 5 s. */
  deadlineMs?: number;
  /** Retry over TCP when an upstream answers with TC=1 (default true). */
  tcpFallback?: boolean;
  /** EDNS UDP payload size we advertise upstream (default 1232). */
  udpSize?: number;
  /** Most distinct questions in flight; beyond it resolve() rejects with UPSTREAM_BUSY (default 1024). */
  maxInflight?: number;
  /** Most of them started for one client prefix (resolve's `client`); default maxInflight / 4. */
  maxPerClient?: number;
  /** Most queries waiting on this forwarder, coalesced ones included (default 4 × maxInflight). */
  maxWaiting?: number;
  /**
   * Most of them from one client prefix, its own questions and the ones it joined
   * (default: maxWaiting in the proportion maxPerClient is of maxInflight, a quarter).
   */
  maxWaitingPerClient?: number;
  /** The process-wide budget this forwarder's questions also count against, and each client prefix's share of it (budget.ts). */
  shared?: InflightShare;
  /** The TCP pool per upstream (tcp-pool.ts). */
  tcp?: TcpPoolOptions;
  /** Circuit-breaker and selection tuning (health.ts). */
  health?: Partial<HealthOptions>;
  /** Source ports to draw from (default: the kernel's ephemeral range minus reserved ports). */
  portRange?: PortRange;
  /** 0x20: randomise the case of query names, take only answers that echo it (default true; guard.ts). */
  caps?: boolean;
  /** Send DNS cookies and check the upstream's (default true; guard.ts). */
  cookies?: boolean;
  /** Give minimal responses: answer section, SOA and denial proofs of negative answers (default true; src/dns/scrub.ts). */
  minimalResponses?: boolean;
  /**
   * Queries sent from one UDP socket (one random source port) before it is replaced
   * (default DEFAULT_PORT_REUSE; 1: a fresh socket per query). udp.ts; docs/FORWARDER.md.
   */
  portReuse?: number;
  /** Most ms one UDP socket takes new queries (default 1000). */
  portReuseMs?: number;
}

/** Queries per upstream socket by default (docs/FORWARDER.md, "Source ports: a bounded pool"). */
export const DEFAULT_PORT_REUSE = 64;

export interface ForwarderStats {
  /** Queries sent upstream over UDP (probes not included). */
  sent: number;
  /** Validated answers received (UDP and TCP). */
  answers: number;
  /** Attempts that timed out. */
  timeouts: number;
  /** Datagrams or TCP messages ignored because they were not the answer; sum of mismatchedBy. */
  mismatched: number;
  mismatchedBy: { source: number; id: number; question: number; malformed: number; case: number; cookie: number; cookieMissing: number };
  /** Records the scrubber removed from answers before anyone got them, by section (src/dns/scrub.ts). */
  scrubbed: { answer: number; authority: number; additional: number };
  /** Times an upstream that did not echo the name's case was switched to plain names. */
  capsFallbacks: number;
  /** Times a server cookie was forgotten after answers without one. */
  cookieResets: number;
  /** TC=1 answers retried over TCP. */
  tcpRetries: number;
  /** resolve() calls served by a query already in flight. */
  coalesced: number;
  /** resolve() calls rejected (timeout, failure, busy): each one is a SERVFAIL for a client. */
  servfail: number;
  /** Rejected at once for capacity (included in servfail); sum of busyBy. */
  busy: number;
  /**
   * engine: maxInflight; client: maxPerClient; clientProcess: the client prefix's share of
   * the shared budget; process: the shared budget; waiting: maxWaiting; clientWaiting:
   * maxWaitingPerClient.
   */
  busyBy: { engine: number; client: number; clientProcess: number; process: number; waiting: number; clientWaiting: number };
  /** Queries waiting for an answer now (a coalesced question counts each waiter). */
  waiting: number;
  /** Upstream TCP pools, every upstream together. */
  tcp: { connects: number; reused: number; busy: number; idleClosed: number; lost: number; open: number };
  /** Send, bind and connect errors. */
  errors: number;
  /** UDP sockets opened toward the upstreams since the start (binds retried after EADDRINUSE included). */
  udpSockets: number;
  /** UDP sockets open now. */
  udpOpen: number;
  /** Health probes sent to upstreams that were down. */
  probes: number;
  /** Distinct questions in flight now. */
  inflight: number;
  perUpstream: UpstreamStats[];
}

interface Waiter {
  resolve(msg: Uint8Array): void;
  reject(err: Error): void;
  /** The prefix key its place among the waiting is charged to (undefined: no client given). */
  client: string | undefined;
}

interface Attempt {
  up: UpstreamHealth;
  /** The question as sent to this upstream (its name's case, the cookies): what the answer must match. */
  sent: Question;
  udp: UdpExchange;
  /** Timed out or failed; a late answer is still accepted. */
  over: boolean;
}

/** One distinct question in flight. */
interface Flight {
  key: string;
  q: Question;
  waiters: Waiter[];
  startedAt: number;
  deadlineAt: number;
  deadlineTimer: NodeJS.Timeout | null;
  attemptTimer: NodeJS.Timeout | null;
  current: Attempt | null;
  attempts: Attempt[];
  /** Attempts per upstream index. */
  tries: Uint8Array;
  tcp: TcpQuery | null;
  /** Prefix key the flight is charged to (undefined: no client given). */
  owner: string | undefined;
  /** Holds a unit of the shared budget. */
  shared: boolean;
  /** Its owner's counters in the shared per-network table (InflightShare.networkOf), or -1: none held. */
  net: number;
  /** A validated answer we would rather not give (TC after TCP failed, a lame rcode) but will at the end. */
  fallback: Uint8Array | null;
  /** Some attempt failed other than by timing out. */
  hadError: boolean;
  /** An attempt was already repeated because the upstream answered BADCOOKIE. */
  cookieRetried?: boolean;
  lastError: Error | null;
  done: boolean;
}

/** A copy as a plain Uint8Array (Buffer#slice would share memory). */
function copyBytes(m: Uint8Array): Uint8Array {
  const out = new Uint8Array(m.length);
  out.set(m);
  return out;
}

/** UDP sockets a question keeps open: the current attempt and the one before (for a late answer). */
const OPEN_ATTEMPTS = 2;

const PROBE_QUESTION: Question = { name: Uint8Array.of(0), qtype: 2 /* NS */, qclass: 1, dnssecOk: false };

function positiveMs(name: string, v: number | undefined, dflt: number): number {
  const x = v ?? dflt;
  if (!Number.isFinite(x) || x <= 0 || x > 2_147_483_647) {
    throw new UpstreamError('UPSTREAM_BAD_CONFIG', `${name} must be a positive number of ms, got ${String(v)}`);
  }
  return x;
}

export class Forwarder {
  readonly timeoutMs: number;
  readonly deadlineMs: number;
  readonly tcpFallback: boolean;
  readonly udpSize: number;
  readonly maxInflight: number;
  readonly maxPerClient: number;
  readonly maxWaiting: number;
  readonly maxWaitingPerClient: number;
  private readonly shared: InflightShare | undefined;
  private readonly tcpOpts: TcpPoolOptions | undefined;
  /** Per upstream index, made on first use. */
  private readonly tcpPools: (TcpPool | undefined)[] = [];
  /** Questions in flight per client prefix; an entry goes when its count reaches 0. */
  private readonly perClient = new Map<string, number>();
  private waiting = 0;
  /** Queries waiting per client prefix (their own questions and the ones they joined); an entry goes at 0. */
  private readonly waitingPerClient = new Map<string, number>();
  private readonly ups: UpstreamHealth[];
  /** 0x20 and cookie state per upstream, by index (guard.ts). */
  private readonly guards: UpstreamGuard[];
  readonly minimalResponses: boolean;
  /** Records scrubbed away, by section. */
  private readonly scrubbed = [0, 0, 0];
  private readonly ports: PortRange;
  private readonly udp: UdpPool;
  readonly portReuse: number;
  private readonly flights = new Map<string, Flight>();
  /** Probes in flight and their timers. */
  private readonly probeExchanges = new Map<UdpExchange, NodeJS.Timeout>();
  /** Most attempts per question: one per upstream plus one per timeout that fits in the deadline. */
  private readonly maxAttempts: number;
  /** Reused for every check; parse is synchronous inside one socket callback. */
  private readonly view = new MessageView();
  private closed = false;
  private readonly s = {
    sent: 0,
    answers: 0,
    timeouts: 0,
    tcpRetries: 0,
    coalesced: 0,
    servfail: 0,
    busy: 0,
    busyEngine: 0,
    busyClient: 0,
    busyClientProcess: 0,
    busyProcess: 0,
    busyWaiting: 0,
    busyClientWaiting: 0,
    tcpBusy: 0,
    errors: 0,
    probes: 0,
    source: 0,
    id: 0,
    question: 0,
    malformed: 0,
    case: 0,
    cookie: 0,
    cookieMissing: 0,
  };

  constructor(opts: ForwarderOptions) {
    if (opts === null || typeof opts !== 'object' || !Array.isArray(opts.upstreams) || opts.upstreams.length === 0) {
      throw new UpstreamError('UPSTREAM_BAD_CONFIG', 'at least one upstream is needed');
    }
    if (opts.upstreams.length > 255) throw new UpstreamError('UPSTREAM_BAD_CONFIG', 'at most 255 upstreams');
    this.timeoutMs = positiveMs('timeoutMs', opts.timeoutMs, 1000);
    this.deadlineMs = positiveMs('deadlineMs', opts.deadlineMs, 4000);
    this.tcpFallback = opts.tcpFallback ?? true;
    this.udpSize = checkUdpSize(opts.udpSize ?? 1232);
    this.maxInflight = opts.maxInflight ?? 1024;
    this.maxPerClient = opts.maxPerClient ?? Math.max(1, Math.floor(this.maxInflight / 4));
    this.maxWaiting = opts.maxWaiting ?? 4 * this.maxInflight;
    this.maxWaitingPerClient = opts.maxWaitingPerClient ?? Math.max(1, Math.floor((this.maxWaiting * Math.min(this.maxPerClient, this.maxInflight)) / this.maxInflight));
    for (const [k, v] of [['maxInflight', this.maxInflight], ['maxPerClient', this.maxPerClient], ['maxWaiting', this.maxWaiting], ['maxWaitingPerClient', this.maxWaitingPerClient]] as const) {
      if (!Number.isInteger(v) || v < 1) throw new UpstreamError('UPSTREAM_BAD_CONFIG', `${k} must be a positive integer, got ${String(v)}`);
    }
    this.shared = opts.shared;
    this.tcpOpts = opts.tcp;
    this.maxAttempts = opts.upstreams.length + Math.ceil(this.deadlineMs / this.timeoutMs);
    const health = resolveHealthOptions(opts.health);
    this.ups = opts.upstreams.map((u, i) => new UpstreamHealth(checkUpstreamAddr(u), i, health));
    this.guards = this.ups.map(() => new UpstreamGuard({ caps: opts.caps, cookies: opts.cookies }));
    this.minimalResponses = opts.minimalResponses ?? true;
    this.ports = opts.portRange ?? kernelPortRange();
    if (!(Number.isInteger(this.ports.low) && Number.isInteger(this.ports.high) && this.ports.low >= 1 && this.ports.high <= 65535 && this.ports.low <= this.ports.high)) {
      throw new UpstreamError('UPSTREAM_BAD_CONFIG', `bad port range ${this.ports.low}-${this.ports.high}`);
    }
    this.portReuse = opts.portReuse ?? DEFAULT_PORT_REUSE;
    if (!Number.isInteger(this.portReuse) || this.portReuse < 1 || this.portReuse > 4096) {
      throw new UpstreamError('UPSTREAM_BAD_CONFIG', `portReuse must be an integer in 1..4096, got ${String(opts.portReuse)}`);
    }
    this.udp = new UdpPool({
      reuse: this.portReuse,
      reuseMs: positiveMs('portReuseMs', opts.portReuseMs, 1000),
      ports: this.ports,
      view: this.view,
      stray: (msg, from) => this.onStray(msg, from.address, from.port),
    });
  }

  /**
   * The upstream's answer to `q` (full wire message, the upstream's ID and
   * question case), or a rejection with an UpstreamError: UPSTREAM_TIMEOUT
   * or UPSTREAM_FAILED at the deadline, UPSTREAM_BUSY at once when too much
   * is in flight, UPSTREAM_CLOSED, UPSTREAM_BAD_QUERY.
   *
   * `client`: the asking client's prefix key (src/net/addr.ts prefixKey); a new question
   * is charged to it, and refused when that prefix already holds maxPerClient here or its
   * share of the process (the shared budget's perNetwork, every engine together). Every
   * query, a joining one too, takes a place among the waiting charged to its prefix,
   * refused past maxWaitingPerClient: one network asking one stalled name over and over
   * cannot fill the waiting room that every other network's new names need.
   */
  resolve(q: Question, client?: string): Promise<Uint8Array> {
    if (this.closed) return Promise.reject(new UpstreamError('UPSTREAM_CLOSED', 'forwarder is closed'));
    try {
      checkQuestion(q);
    } catch (e) {
      return Promise.reject(e);
    }
    const key = questionKey(q);
    if (this.waiting >= this.maxWaiting) {
      this.s.busyWaiting++;
      return this.busy(`${this.waiting} queries waiting on the upstream`);
    }
    if (client !== undefined && (this.waitingPerClient.get(client) ?? 0) >= this.maxWaitingPerClient) {
      this.s.busyClientWaiting++;
      return this.busy(`the client's network has ${this.maxWaitingPerClient} queries waiting on the upstream`);
    }
    const existing = this.flights.get(key);
    if (existing !== undefined) {
      this.s.coalesced++;
      this.addWaiting(client);
      return new Promise((resolve, reject) => existing.waiters.push({ resolve, reject, client }));
    }
    if (this.flights.size >= this.maxInflight) {
      this.s.busyEngine++;
      return this.busy(`${this.flights.size} questions in flight`);
    }
    if (client !== undefined && (this.perClient.get(client) ?? 0) >= this.maxPerClient) {
      this.s.busyClient++;
      return this.busy(`the client's network has ${this.maxPerClient} questions in flight`);
    }
    let net = -1;
    if (this.shared !== undefined && client !== undefined) {
      net = this.shared.networkOf(client);
      if (!this.shared.takeNetwork(net)) {
        this.s.busyClientProcess++;
        return this.busy("the client's network holds its share of the process's questions in flight");
      }
    }
    if (this.shared !== undefined && !this.shared.take()) {
      if (net >= 0) this.shared.giveNetwork(net);
      this.s.busyProcess++;
      return this.busy('the process is at its limit of questions in flight');
    }
    if (client !== undefined) this.perClient.set(client, (this.perClient.get(client) ?? 0) + 1);
    this.addWaiting(client);
    const now = performance.now();
    const f: Flight = {
      key,
      // Copy: the caller's name may live in a frame that is reused as soon as we return.
      q: { name: copyBytes(q.name), qtype: q.qtype, qclass: q.qclass, dnssecOk: q.dnssecOk === true, checkingDisabled: q.checkingDisabled === true },
      waiters: [],
      startedAt: now,
      deadlineAt: now + this.deadlineMs,
      deadlineTimer: null,
      attemptTimer: null,
      current: null,
      attempts: [],
      tries: new Uint8Array(this.ups.length),
      tcp: null,
      owner: client,
      shared: this.shared !== undefined,
      net,
      fallback: null,
      hadError: false,
      lastError: null,
      done: false,
    };
    const p = new Promise<Uint8Array>((resolve, reject) => f.waiters.push({ resolve, reject, client }));
    this.flights.set(key, f);
    f.deadlineTimer = setTimeout(() => this.onDeadline(f), this.deadlineMs);
    this.startProbes(now);
    this.nextAttempt(f);
    return p;
  }

  private addWaiting(client: string | undefined): void {
    this.waiting++;
    if (client !== undefined) this.waitingPerClient.set(client, (this.waitingPerClient.get(client) ?? 0) + 1);
  }

  private busy(why: string): Promise<never> {
    this.s.busy++;
    this.s.servfail++;
    return Promise.reject(UpstreamError.outcome('UPSTREAM_BUSY', why));
  }

  // ---- attempts ------------------------------------------------------------

  private nextAttempt(f: Flight): void {
    if (f.done) return;
    const now = performance.now();
    const left = f.deadlineAt - now;
    if (left <= 0) {
      this.onDeadline(f);
      return;
    }
    if (f.attempts.length >= this.maxAttempts) {
      // Out of attempts: wait for a late answer on a socket still open, or end now if none is.
      if (f.attempts.every((x) => x.udp.isClosed)) this.onDeadline(f);
      return;
    }
    // Bound the sockets a question holds: the oldest open one gives up on its late answer.
    let open = 0;
    for (let i = f.attempts.length - 1; i >= 0; i--) {
      const u = f.attempts[i]!.udp;
      if (u.isClosed) continue;
      if (++open >= OPEN_ATTEMPTS) u.close();
    }
    const up = pickUpstream(this.ups, f.tries);
    f.tries[up.index] = Math.min(255, f.tries[up.index]! + 1);
    const sent = this.guards[up.index]!.prepare(f.q, now);
    const attempt: Attempt = { up, sent, udp: null as unknown as UdpExchange, over: false };
    f.attempts.push(attempt);
    f.current = attempt;
    this.s.sent++;
    up.sent++;
    attempt.udp = this.udp.exchange(up.addr, sent, (id) => buildQuery(sent, id, this.udpSize), {
      answer: (msg, view) => this.onUdpAnswer(f, attempt, msg, view),
      ignored: (reason) => this.onIgnored(up, reason, f, attempt),
      error: (err) => this.onAttemptError(f, attempt, err),
    });
    const wait = Math.min(this.timeoutMs, left);
    f.attemptTimer = setTimeout(() => this.onAttemptTimeout(f, attempt, wait), wait);
  }

  private onAttemptTimeout(f: Flight, a: Attempt, waitedMs: number): void {
    f.attemptTimer = null;
    if (f.done || a.over) return;
    a.over = true;
    this.s.timeouts++;
    a.up.onFailure(performance.now(), 'timeout', waitedMs);
    // The socket stays open: a late answer from this upstream still counts.
    this.nextAttempt(f);
  }

  private onAttemptError(f: Flight, a: Attempt, err: Error): void {
    this.s.errors++;
    f.hadError = true;
    f.lastError = err;
    if (f.done || a.over) return;
    a.over = true;
    a.up.onFailure(performance.now(), 'error', 0);
    if (f.current !== a || f.tcp !== null) return;
    this.clearAttemptTimer(f);
    // Failing at once on every upstream (no route, no sockets): give up now rather than retry until the deadline.
    if (f.attempts.length >= this.ups.length && f.attempts.every((x) => x.udp.isClosed)) {
      this.onDeadline(f);
      return;
    }
    this.nextAttempt(f);
  }

  private onIgnored(up: UpstreamHealth, reason: MismatchCode, f?: Flight, a?: Attempt): void {
    up.mismatched++;
    this.countMismatch(reason);
    // A case or cookie mismatch that may be the upstream's way rather than a forgery: ask
    // again at once (guard.ts says when) instead of waiting out the attempt.
    if (!this.guards[up.index]!.mismatched(reason, performance.now())) return;
    if (f === undefined || a === undefined || f.done || a.over || f.current !== a || f.tcp !== null) return;
    a.over = true;
    this.clearAttemptTimer(f);
    this.nextAttempt(f);
  }

  private countMismatch(reason: MismatchCode): void {
    if (reason === Mismatch.SOURCE) this.s.source++;
    else if (reason === Mismatch.ID) this.s.id++;
    else if (reason === Mismatch.QUESTION) this.s.question++;
    else if (reason === Mismatch.CASE) this.s.case++;
    else if (reason === Mismatch.COOKIE) this.s.cookie++;
    else if (reason === Mismatch.NO_COOKIE) this.s.cookieMissing++;
    else this.s.malformed++;
  }

  /**
   * A datagram on an upstream socket whose ID no pending query holds: a forgery, or an
   * answer to a query already settled (late, or its socket reused). Counted, never taken.
   */
  private onStray(msg: Uint8Array, address: string, port: number): void {
    let up: UpstreamHealth | undefined;
    for (const u of this.ups) if (u.addr.host === address && u.addr.port === port) up = u;
    const reason = up === undefined ? Mismatch.SOURCE : msg.length < 12 ? Mismatch.MALFORMED : Mismatch.ID;
    if (up !== undefined) this.onIgnored(up, reason);
    else this.countMismatch(reason);
  }

  private onUdpAnswer(f: Flight, a: Attempt, msg: Uint8Array, view: MessageView): void {
    if (f.done) return;
    this.s.answers++;
    a.up.onAnswer(performance.now() - a.udp.sentAt);
    if (view.rcode === RCODE_SERVFAIL) a.up.servfail++;
    this.guards[a.up.index]!.answered(view, a.sent);
    a.over = true;
    a.udp.close();
    if (view.tc && this.tcpFallback) {
      f.fallback = copyBytes(msg);
      this.startTcp(f, a.up);
      return;
    }
    this.onValidAnswer(f, a.up, msg, view);
  }

  /** A validated answer (UDP without TC, or TCP): give it, or keep it and try elsewhere for a lame rcode. */
  private onValidAnswer(f: Flight, up: UpstreamHealth, msg: Uint8Array, view: MessageView): void {
    const rc = view.rcode;
    if (rc === RCODE_BADCOOKIE) {
      // RFC 7873 5.3: the answer carries a fresh server cookie (kept by the guard); ask again
      // with it, once. Never given to a client: a second one counts as a failed attempt.
      this.clearAttemptTimer(f);
      if (f.cookieRetried === true) {
        f.hadError = true;
        f.lastError = new UpstreamError('UPSTREAM_FAILED', `${up.label} answered BADCOOKIE twice`);
      }
      f.cookieRetried = true;
      this.nextAttempt(f);
      return;
    }
    if (rc === RCODE_REFUSED || rc === RCODE_NOTIMP || rc === RCODE_FORMERR) {
      // Lame for us (ACL, unsupported, our EDNS): worth another upstream if one is untried.
      // Not a health failure: the upstream is alive, and an authoritative one refuses foreign zones.
      f.fallback = copyBytes(msg);
      if (f.tries.some((t, i) => t === 0 && !this.ups[i]!.down)) {
        this.clearAttemptTimer(f);
        this.nextAttempt(f);
        return;
      }
    }
    this.succeed(f, msg);
  }

  private startTcp(f: Flight, up: UpstreamHealth): void {
    this.clearAttemptTimer(f);
    this.closeUdp(f);
    const left = f.deadlineAt - performance.now();
    let pool = this.tcpPools[up.index];
    if (pool === undefined) {
      pool = new TcpPool(up.addr, this.view, (reason) => this.onIgnored(up, reason), this.tcpOpts);
      this.tcpPools[up.index] = pool;
    }
    // Plain case over TCP (guard.ts says why); the cookies go along.
    const sent = this.guards[up.index]!.prepare(f.q, performance.now(), true);
    // TCP gets what is left of the budget: a large answer is worth more than a second UDP round.
    const tcp = pool.query(sent, (id) => buildQuery(sent, id, this.udpSize), Math.max(1, left), {
      answer: (msg, view) => {
        f.tcp = null;
        this.s.answers++;
        this.guards[up.index]!.answered(view, sent);
        this.onValidAnswer(f, up, msg, view);
      },
      error: (err, timedOut) => {
        f.tcp = null;
        if (timedOut) this.s.timeouts++;
        else this.s.errors++;
        f.hadError = true;
        f.lastError = err;
        up.onFailure(performance.now(), timedOut ? 'timeout' : 'error', 0);
        if (f.done) return;
        // Another upstream may manage TCP; the truncated answer is what we give if none does.
        this.nextAttempt(f);
      },
    });
    if (tcp === null) {
      // Every connection to this upstream is full: no queue, the truncated answer now
      // (a UDP client retries over TCP to us; a TCP client gets SERVFAIL from the engine).
      this.s.tcpBusy++;
      this.succeed(f, f.fallback!);
      return;
    }
    this.s.tcpRetries++;
    f.tcp = tcp;
  }

  // ---- settling --------------------------------------------------------------

  private succeed(f: Flight, msg: Uint8Array): void {
    // Scrubbed before anyone sees it: what is cached, promoted or relayed is only what the
    // rules allow (src/dns/scrub.ts), rebuilt, and minimal when so configured.
    let clean: Uint8Array;
    try {
      clean = scrubResponse(msg, { minimal: this.minimalResponses, dnssecOk: f.q.dnssecOk, dropped: this.scrubbed });
    } catch (e) {
      // Parsed before, so only a rebuild over 65535 bytes lands here: answered SERVFAIL, never relayed as it came.
      const ws = this.settle(f);
      this.s.servfail += ws.length;
      const err = new UpstreamError('UPSTREAM_FAILED', `answer could not be scrubbed: ${(e as Error).message}`);
      for (const w of ws) w.reject(err);
      return;
    }
    const ws = this.settle(f);
    for (let i = 0; i < ws.length; i++) ws[i]!.resolve(i === 0 ? clean : copyBytes(clean));
  }

  private onDeadline(f: Flight): void {
    if (f.done) return;
    const a = f.current;
    if (a !== null && !a.over && f.tcp === null) {
      // The deadline cut the last attempt's wait short: it timed out all the same.
      a.over = true;
      this.s.timeouts++;
      const now = performance.now();
      a.up.onFailure(now, 'timeout', a.udp.sentAt > 0 ? now - a.udp.sentAt : this.timeoutMs);
    }
    if (f.fallback !== null) {
      this.succeed(f, f.fallback);
      return;
    }
    const code: UpstreamErrorCode = f.hadError ? 'UPSTREAM_FAILED' : 'UPSTREAM_TIMEOUT';
    const ms = Math.round(performance.now() - f.startedAt);
    const tried = f.attempts.map((a) => a.up.label).join(', ');
    const why =
      code === 'UPSTREAM_TIMEOUT'
        ? `no answer after ${ms} ms (${f.attempts.length} attempts: ${tried})`
        : `upstreams failed after ${ms} ms (${tried}): ${f.lastError?.message ?? 'error'}`;
    const ws = this.settle(f);
    this.s.servfail += ws.length;
    const err = UpstreamError.outcome(code, why, f.lastError ? { cause: f.lastError } : undefined);
    for (const w of ws) w.reject(err);
  }

  /** Ends a flight: timers, sockets, map entry. Returns its waiters. */
  private settle(f: Flight): Waiter[] {
    f.done = true;
    this.clearAttemptTimer(f);
    if (f.deadlineTimer) clearTimeout(f.deadlineTimer);
    f.deadlineTimer = null;
    this.closeUdp(f);
    f.tcp?.close();
    f.tcp = null;
    if (this.flights.get(f.key) === f) {
      this.flights.delete(f.key);
      this.waiting -= f.waiters.length;
      for (const w of f.waiters) {
        if (w.client === undefined) continue;
        const n = (this.waitingPerClient.get(w.client) ?? 1) - 1;
        if (n > 0) this.waitingPerClient.set(w.client, n);
        else this.waitingPerClient.delete(w.client);
      }
      if (f.shared) this.shared!.give();
      if (f.net >= 0) this.shared!.giveNetwork(f.net);
      if (f.owner !== undefined) {
        const n = (this.perClient.get(f.owner) ?? 1) - 1;
        if (n > 0) this.perClient.set(f.owner, n);
        else this.perClient.delete(f.owner);
      }
    }
    const ws = f.waiters;
    f.waiters = [];
    return ws;
  }

  private clearAttemptTimer(f: Flight): void {
    if (f.attemptTimer) clearTimeout(f.attemptTimer);
    f.attemptTimer = null;
  }

  private closeUdp(f: Flight): void {
    for (const a of f.attempts) {
      a.over = true;
      a.udp.close();
    }
  }

  // ---- probes ----------------------------------------------------------------

  /** Sends one probe ('. NS') to each down upstream whose backoff is over. */
  private startProbes(now: number): void {
    for (const up of this.ups) {
      if (up.probeDue(now)) this.probe(up);
    }
  }

  private probe(up: UpstreamHealth): void {
    up.probing = true;
    up.probes++;
    this.s.probes++;
    const end = (): void => {
      up.probing = false;
      const t = this.probeExchanges.get(ex);
      if (t) clearTimeout(t);
      this.probeExchanges.delete(ex);
      ex.close();
    };
    const ex = this.udp.exchange(up.addr, PROBE_QUESTION, (id) => buildQuery(PROBE_QUESTION, id, this.udpSize), {
      // Any validated answer, whatever its rcode, shows the upstream is there.
      answer: () => {
        up.onAnswer(performance.now() - ex.sentAt);
        end();
      },
      ignored: (reason) => this.onIgnored(up, reason),
      error: () => {
        this.s.errors++;
        end();
        up.onFailure(performance.now(), 'error', 0);
      },
    });
    this.probeExchanges.set(
      ex,
      setTimeout(() => {
        end();
        up.onFailure(performance.now(), 'timeout', 0);
      }, this.timeoutMs),
    );
  }

  // ---- outside ---------------------------------------------------------------

  /** Each upstream's health and running counts, in list order (read by the stats publisher). */
  get health(): readonly UpstreamHealth[] {
    return this.ups;
  }

  /** Distinct questions waiting for an upstream now. */
  get inflight(): number {
    return this.flights.size;
  }

  stats(): ForwarderStats {
    const s = this.s;
    const now = performance.now();
    return {
      sent: s.sent,
      answers: s.answers,
      timeouts: s.timeouts,
      mismatched: s.source + s.id + s.question + s.malformed + s.case + s.cookie + s.cookieMissing,
      mismatchedBy: { source: s.source, id: s.id, question: s.question, malformed: s.malformed, case: s.case, cookie: s.cookie, cookieMissing: s.cookieMissing },
      scrubbed: { answer: this.scrubbed[0]!, authority: this.scrubbed[1]!, additional: this.scrubbed[2]! },
      capsFallbacks: this.guards.reduce((n, g) => n + g.capsFallbacks, 0),
      cookieResets: this.guards.reduce((n, g) => n + g.cookieResets, 0),
      tcpRetries: s.tcpRetries,
      coalesced: s.coalesced,
      servfail: s.servfail,
      busy: s.busy,
      busyBy: { engine: s.busyEngine, client: s.busyClient, clientProcess: s.busyClientProcess, process: s.busyProcess, waiting: s.busyWaiting, clientWaiting: s.busyClientWaiting },
      waiting: this.waiting,
      tcp: this.tcpStats(),
      errors: s.errors,
      udpSockets: this.udp.opened,
      udpOpen: this.udp.sockets,
      probes: s.probes,
      inflight: this.flights.size,
      perUpstream: this.ups.map((u) => u.snapshot(now)),
    };
  }

  private tcpStats(): ForwarderStats['tcp'] {
    const t = { connects: 0, reused: 0, busy: this.s.tcpBusy, idleClosed: 0, lost: 0, open: 0 };
    for (const p of this.tcpPools) {
      if (p === undefined) continue;
      t.connects += p.s.connects;
      t.reused += p.s.reused;
      t.idleClosed += p.s.idleClosed;
      t.lost += p.s.lost;
      t.open += p.open;
    }
    return t;
  }

  /** Client prefixes holding questions in flight now (bounded by maxInflight). */
  get clients(): number {
    return this.perClient.size;
  }

  /** Client prefixes with queries waiting now (bounded by maxWaiting). */
  get waitingClients(): number {
    return this.waitingPerClient.size;
  }

  /** The upstreams in list order, canonicalized. */
  get upstreams(): UpstreamAddr[] {
    return this.ups.map((u) => ({ ...u.addr }));
  }

  /** Rejects everything in flight with UPSTREAM_CLOSED and closes every socket. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const err = new UpstreamError('UPSTREAM_CLOSED', 'forwarder closed');
    for (const f of [...this.flights.values()]) {
      for (const w of this.settle(f)) w.reject(err);
    }
    for (const [ex, t] of this.probeExchanges) {
      clearTimeout(t);
      ex.close();
    }
    this.probeExchanges.clear();
    for (const p of this.tcpPools) p?.close();
    this.udp.close();
    // Let the socket close callbacks run.
    await new Promise<void>((r) => setImmediate(r));
  }
}
