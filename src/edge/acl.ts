/**
 * Access control by source prefix: --allow (served), --deny (dropped without a word),
 * and everything else REFUSED. The longest matching prefix decides, so a deny inside an
 * allow (or an allow inside a deny) works. The same decision is made in the XDP program
 * (LPM tries acl_v4 and acl_v6) and here, for the kernel UDP and TCP paths.
 *
 * --rrl-exempt is a third list of prefixes whose clients' responses are not rate
 * limited. The three lists are folded into one set of prefixes, each carrying the
 * answer of every list for the addresses it covers, so one longest-prefix lookup gives
 * both decisions. Folding is exact: for an address A whose longest match in the folded
 * set is P, the longest allow/deny prefix holding A is also the longest holding P (a
 * longer one holding A would itself be in the set and match A better than P), and the
 * same for the exempt list.
 */
import { cidrContains, parseCidr, type Addr, type Cidr } from '../net/addr.js';

/** Actions, as bpf/heimdall.h numbers them (ACL_*). */
export const ACL_REFUSE = 0;
export const ACL_ALLOW = 1;
export const ACL_DENY = 2;
export const ACL_RRL_EXEMPT = 0x80;
export const ACL_ACTION_MASK = 0x7f;

/**
 * Served by default: loopback and the private, shared and link-local ranges (the same
 * set dnsdist allows out of the box). A public address must be allowed explicitly: a
 * resolver open to the internet is a reflector.
 */
export const DEFAULT_ALLOW = [
  '127.0.0.0/8', '::1/128', '10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '100.64.0.0/10', '169.254.0.0/16', 'fc00::/7', 'fe80::/10',
] as const;

/** One prefix of the folded set and its value (action | ACL_RRL_EXEMPT). */
export interface AclEntry {
  cidr: Cidr;
  value: number;
}

function longest(list: readonly Cidr[], a: { family: 4 | 6; bytes: Uint8Array }): Cidr | undefined {
  let best: Cidr | undefined;
  for (const c of list) if ((!best || c.len > best.len) && cidrContains(c, a)) best = c;
  return best;
}

/** Big-endian 32-bit word i of 16 address bytes. */
function word(b: Uint8Array, i: number): number {
  return ((b[4 * i]! << 24) | (b[4 * i + 1]! << 16) | (b[4 * i + 2]! << 8) | b[4 * i + 3]!) >>> 0;
}

function maskWord(len: number, i: number): number {
  const bits = Math.min(32, Math.max(0, len - 32 * i));
  return bits === 0 ? 0 : bits === 32 ? 0xffffffff : (~(0xffffffff >>> bits)) >>> 0;
}

export class AccessList {
  /** Longest first, so the first match is the longest. */
  private readonly entries: readonly AclEntry[];
  /**
   * The same entries as words for the per-query lookup: for IPv4 one network and mask
   * each, for IPv6 four; `value` parallel. A query compares integers, no bytes.
   */
  private readonly v4: { net: Uint32Array; mask: Uint32Array; value: Uint8Array };
  private readonly v6: { net: Uint32Array; mask: Uint32Array; value: Uint8Array };

  private constructor(entries: AclEntry[]) {
    this.entries = entries.sort((x, y) => y.cidr.len - x.cidr.len);
    const table = (family: 4 | 6) => {
      const list = this.entries.filter((e) => e.cidr.family === family);
      const w = family === 4 ? 1 : 4;
      const t = { net: new Uint32Array(list.length * w), mask: new Uint32Array(list.length * w), value: new Uint8Array(list.length) };
      list.forEach((e, k) => {
        for (let i = 0; i < w; i++) {
          t.mask[k * w + i] = maskWord(e.cidr.len, i);
          t.net[k * w + i] = (word(e.cidr.bytes, i) & t.mask[k * w + i]!) >>> 0;
        }
        t.value[k] = e.value;
      });
      return t;
    };
    this.v4 = table(4);
    this.v6 = table(6);
  }

  /**
   * Folds the lists. A prefix in both allow and deny is denied (the safer reading of a
   * contradiction).
   */
  static build(allow: readonly Cidr[], deny: readonly Cidr[], exempt: readonly Cidr[] = []): AccessList {
    const all = new Map<string, Cidr>();
    for (const c of [...allow, ...deny, ...exempt]) all.set(c.text, c);
    const decided = [...allow.filter((a) => !deny.some((d) => d.text === a.text)), ...deny];
    const entries: AclEntry[] = [];
    for (const p of all.values()) {
      // The prefix itself stands for the addresses it covers (see the file comment).
      const probe = { family: p.family, bytes: p.bytes };
      const holders = decided.filter((c) => c.len <= p.len);
      const d = longest(holders, probe);
      const action = d === undefined ? ACL_REFUSE : deny.includes(d) ? ACL_DENY : ACL_ALLOW;
      const ex = longest(exempt.filter((c) => c.len <= p.len), probe) !== undefined;
      entries.push({ cidr: p, value: action | (ex ? ACL_RRL_EXEMPT : 0) });
    }
    return new AccessList(entries);
  }

  /** The folded set, for the XDP program's tries. */
  list(): readonly AclEntry[] {
    return this.entries;
  }

  /** The value for a source: action | ACL_RRL_EXEMPT (ACL_REFUSE when nothing matches). */
  decide(a: Addr): number {
    const b = a.bytes;
    if (a.family === 4) {
      const x = word(b, 0);
      const { net, mask, value } = this.v4;
      for (let k = 0; k < value.length; k++) if (((x & mask[k]!) >>> 0) === net[k]) return value[k]!;
      return ACL_REFUSE;
    }
    const x0 = word(b, 0);
    const x1 = word(b, 1);
    const x2 = word(b, 2);
    const x3 = word(b, 3);
    const { net, mask, value } = this.v6;
    for (let k = 0, j = 0; k < value.length; k++, j += 4) {
      if (((x0 & mask[j]!) >>> 0) === net[j] && ((x1 & mask[j + 1]!) >>> 0) === net[j + 1] &&
        ((x2 & mask[j + 2]!) >>> 0) === net[j + 2] && ((x3 & mask[j + 3]!) >>> 0) === net[j + 3]) return value[k]!;
    }
    return ACL_REFUSE;
  }
}

/**
 * A --allow / --deny / --rrl-exempt value: comma-separated prefixes, where `default`
 * stands for DEFAULT_ALLOW and `any` for 0.0.0.0/0,::/0. Throws an Error naming the bad
 * item.
 */
export function parseAclList(text: string): Cidr[] {
  const out: Cidr[] = [];
  for (const raw of text.split(',')) {
    const item = raw.trim();
    if (item === '') continue;
    if (item === 'default') out.push(...DEFAULT_ALLOW.map(parseCidr));
    else if (item === 'any') out.push(parseCidr('0.0.0.0/0'), parseCidr('::/0'));
    else out.push(parseCidr(item));
  }
  return out;
}
