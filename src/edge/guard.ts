/**
 * EdgeGuard: the edge policy on the userspace paths, as a FrameHandler around the engine.
 * The XDP program makes the same decisions for what it sees (bpf/heimdall.bpf.c
 * check_edge, refuse, rate_limit); this is the same policy for the AF_XDP workers (a
 * second, identical check), the kernel UDP listener (fragments, IP options, queues
 * without a worker) and TCP.
 *
 *   not recognisably a query ─► dropped (no error reply to junk: two services cannot loop)
 *   response (QR=1)          ─► dropped
 *   reflection source port   ─► dropped (UDP)
 *   denied source            ─► dropped
 *   source neither allowed nor denied ─► REFUSED (rate limited as an error)
 *   allowed                  ─► the engine, then rate limiting of its reply (UDP only:
 *                               TCP cannot be spoofed, and a slip sends clients there)
 *
 * "Recognisably a query" is a full header with QR=0 and exactly one question: anything
 * else is not answered at all, not even with FORMERR. A source that is to be refused
 * gets REFUSED only for a plain query (plainQuery(), the XDP program's admission rules
 * in parse_query); anything else it sends is dropped as not a query, as the program
 * drops it (DROP_REFUSED_JUNK).
 */
import type { Handled } from '../engine/engine.js';
import type { StatsBlock } from '../engine/stats.js';
import { fastMonotonicNs, type Clock } from '../engine/clock.js';
import { MessageView } from '../dns/view.js';
import { writeRcodeReply } from '../dns/reply.js';
import type { Addr } from '../net/addr.js';
import type { FrameHandler } from '../io/xsk-server.js';
import { ACL_ACTION_MASK, ACL_DENY, ACL_REFUSE, ACL_RRL_EXEMPT, type AccessList } from './acl.js';
import { DROP, RRL_TOKEN_ERROR, SEND, responseToken, type RateLimiter } from './rrl.js';

const HEADER_LEN = 12;
const RCODE_REFUSED = 5;
const FLAG_TC_HI = 0x02;

export interface EdgePolicy {
  acl: AccessList;
  /** null: rate limiting off. */
  rrl: RateLimiter | null;
  /** Source ports that are never clients (bpf/heimdall.h HEIMDALL_GUARDED_PORTS). */
  guardedPorts: ReadonlySet<number>;
  /** Our EDNS UDP size, for the REFUSED replies' OPT. */
  udpSize: number;
}

/** Multicast, broadcast and unspecified sources. Loopback is fine here: on these paths it is the host's own. */
export function badSource(a: Addr): boolean {
  const b = a.bytes;
  if (a.family === 4) return b[0] === 0 || b[0]! >= 224;
  if (b[0] === 0xff) return true;
  for (let i = 0; i < 16; i++) if (b[i] !== 0) return false;
  return true;
}

/**
 * A plain query, as the XDP program admits one (bpf/heimdall.bpf.c parse_query): QR=0,
 * opcode QUERY, neither TC nor an RCODE (extended bits included), one question, no
 * answers or authorities, and at most one additional, which is an OPT of version 0 whose
 * RDATA is at most OPT_RDATA_MAX bytes (the program's bound; a longer one it drops from a
 * refused source). For a parsed view.
 */
export function plainQuery(v: MessageView): boolean {
  if (v.qr || v.opcode !== 0 || v.tc || v.rcode !== 0) return false;
  if (v.qdcount !== 1 || v.ancount !== 0 || v.nscount !== 0) return false;
  if (v.arcount === 0) return true;
  return v.arcount === 1 && v.hasOpt && v.ednsVersion === 0 && v.optRdataLen <= OPT_RDATA_MAX;
}

/** bpf/heimdall.bpf.c OPT_RDATA_MAX: the longest OPT RDATA the program walks. */
const OPT_RDATA_MAX = 1024;

/** Turns the reply at out[off, off+n) into a truncated one (TC=1, question only). Returns its length, or 0. */
export function truncateReply(out: Uint8Array, off: number, n: number): number {
  if (n < HEADER_LEN) return 0;
  let p = off + HEADER_LEN;
  const end = off + n;
  for (let i = 0; i < 128; i++) {
    if (p >= end) return 0;
    const len = out[p]!;
    if (len === 0) break;
    if (len > 63) return 0;
    p += len + 1;
  }
  p += 1 + 4;
  if (p > end) return 0;
  out[off + 2]! |= FLAG_TC_HI;
  for (let i = 6; i < HEADER_LEN; i++) out[off + i] = 0;
  return p - off;
}

export class EdgeGuard implements FrameHandler {
  private readonly view = new MessageView();
  private readonly clock: Clock;

  constructor(
    private readonly inner: FrameHandler,
    private policy: EdgePolicy,
    private readonly stats: StatsBlock,
    clock?: Clock,
  ) {
    this.clock = clock ?? fastMonotonicNs;
  }

  /** Swaps the policy (a reload); queries in flight finish under the old one. */
  setPolicy(p: EdgePolicy): void {
    this.policy = p;
  }

  /**
   * Whether a connection from client is taken at all (the TCP listener asks at accept,
   * and counts what it declines): not when the access list denies it, as its queries
   * would be dropped. Reads the current policy, so a reload applies to the next connection.
   */
  admits(client: Addr): boolean {
    return (this.policy.acl.decide(client) & ACL_ACTION_MASK) !== ACL_DENY;
  }

  handle(buf: Uint8Array, off: number, len: number, out: Uint8Array, outOff: number, tcp: boolean, maxLen?: number, nowNs?: number, client?: Addr): Handled {
    const st = this.stats;
    if (len < HEADER_LEN || buf[off + 4] !== 0 || buf[off + 5] !== 1) {
      st.add('edgeNotQuery');
      return 0;
    }
    if ((buf[off + 2]! & 0x80) !== 0) {
      st.add('edgeResponse');
      return 0;
    }
    // Fail closed: a query whose source the transport could not tell (a TCP peer gone
    // before its address was read) is not served.
    if (!client) {
      st.add('edgeBadSource');
      return 0;
    }
    const p = this.policy;
    if (!tcp && client.port !== undefined && p.guardedPorts.has(client.port)) {
      st.add('edgeSourcePort');
      return 0;
    }
    if (badSource(client)) {
      st.add('edgeBadSource');
      return 0;
    }
    const v = p.acl.decide(client);
    const action = v & ACL_ACTION_MASK;
    if (action === ACL_DENY) {
      st.add('edgeDenied');
      return 0;
    }
    const exempt = tcp || p.rrl === null || (v & ACL_RRL_EXEMPT) !== 0;
    if (action === ACL_REFUSE) return this.refuse(buf, off, len, out, outOff, tcp, maxLen, exempt ? undefined : client, nowNs);
    const r = this.inner.handle(buf, off, len, out, outOff, tcp, maxLen, nowNs, client);
    if (exempt) return r;
    // A reply made now is charged at the caller's batch clock when it passed one: reading
    // the clock here, per reply, boxed two doubles a query (16.6 B a call in process; see
    // docs/BENCHMARKS.md, "Tails: what lines up"). An answer that waited on the upstream
    // reads the clock when it comes; callers without a batch clock (the kernel listeners)
    // pass none, and the guard's own clock is read.
    if (typeof r === 'number') return this.limit(out, outOff, r, client, undefined, nowNs);
    return this.limitLater(r, out, outOff, client);
  }

  /**
   * An answer that waits on the upstream, limited when it comes. Its own method, not a
   * closure in handle(): a function that makes a closure allocates the closure's context
   * on every call, the hits' too, once the optimiser has seen the closure made (53 B a
   * hit in the workers; docs/BENCHMARKS.md, "Allocation on the hit path").
   */
  private limitLater(r: Promise<number>, out: Uint8Array, outOff: number, client: Addr): Promise<number> {
    // The client is the caller's scratch object: keep a copy for the answer's turn.
    const c: Addr = { family: client.family, bytes: client.bytes.slice(), port: client.port };
    return r.then((n) => this.limit(out, outOff, n, c));
  }

  private refuse(buf: Uint8Array, off: number, len: number, out: Uint8Array, outOff: number, tcp: boolean, maxLen: number | undefined, limited: Addr | undefined, nowNs: number | undefined): number {
    const v = this.view;
    // Not an error reply to what is not plainly a query (an update, a notify, something
    // with answers in it): that is how two services start a loop.
    if (v.parse(buf, off, len) !== 0 || !plainQuery(v)) {
      this.stats.add('edgeNotQuery');
      return 0;
    }
    let n: number;
    try {
      n = writeRcodeReply(v, RCODE_REFUSED, out, outOff, { udpSize: this.policy.udpSize, tcp, maxLen });
    } catch {
      this.stats.add('edgeNotQuery');
      return 0;
    }
    this.stats.add('edgeRefused');
    return limited ? this.limit(out, outOff, n, limited, RRL_TOKEN_ERROR, nowNs) : n;
  }

  /** Rate limiting of a reply about to be sent: its length, a truncated length, or 0. */
  private limit(out: Uint8Array, off: number, n: number, client: Addr, token?: number, nowNs?: number): number {
    const rrl = this.policy.rrl;
    if (n <= 0 || !rrl) return n;
    const verdict = rrl.charge(client, token ?? responseToken(out, off, n), nowNs ?? this.clock());
    if (verdict === SEND) return n;
    if (verdict === DROP) {
      this.stats.add('edgeRateLimited');
      return 0;
    }
    this.stats.add('edgeSlipped');
    return truncateReply(out, off, n);
  }
}
