/**
 * The benchmarks' deterministic query and response samples (scripts/bench/core.ts,
 * shared-cache.ts): random names in 0x20 mixed case, 70% A / 30% AAAA, 90% with EDNS
 * (half with a cookie), and compressed upstream responses of 1-3 records.
 */
import { Buffer } from 'node:buffer';
import dnsPacket from 'dns-packet';
import { mulberry32 } from './rng.js';

const rnd = mulberry32(42);
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
const LETTERS = 'abcdefghijklmnopqrstuvwxyz0123456789';
const TLDS = ['com', 'net', 'org', 'de', 'io', 'co.uk', 'example'];

function randomName(): string {
  const labels: string[] = [];
  const n = 1 + Math.floor(rnd() * 3);
  for (let i = 0; i < n; i++) {
    let l = '';
    const len = 3 + Math.floor(rnd() * 10);
    for (let j = 0; j < len; j++) l += pick([...LETTERS]);
    labels.push(l);
  }
  return `${labels.join('.')}.${pick(TLDS)}`;
}

function mixCase(s: string): string {
  return [...s].map((c) => (rnd() < 0.5 ? c.toUpperCase() : c)).join('');
}

export interface Sample {
  name: string;
  qtype: 'A' | 'AAAA';
  /** As dns-packet wants it. */
  query: Buffer;
  /** The same bytes in a plain Uint8Array, as a UMEM view gives them. */
  raw: Uint8Array;
  response: Buffer;
}

/** A compressed upstream response: owners point at the question (0xC00C), then OPT. */
export function buildResponse(id: number, name: string, qtype: 'A' | 'AAAA', n: number, dnssecOk: boolean): Buffer {
  const q = dnsPacket.encode({ id, type: 'query', questions: [{ name, type: qtype, class: 'IN' }] });
  const rdlen = qtype === 'A' ? 4 : 16;
  const parts: number[] = [...q.subarray(0, 12 + q.length - 12)];
  parts[2] = 0x81;
  parts[3] = 0x80;
  parts[7] = n;
  parts[11] = 1;
  for (let i = 0; i < n; i++) {
    parts.push(0xc0, 12, 0, qtype === 'A' ? 1 : 28, 0, 1, 0, 0, 0x0e, 0x10, 0, rdlen);
    for (let j = 0; j < rdlen; j++) parts.push(Math.floor(rnd() * 256));
  }
  parts.push(0, 0, 41, 0x04, 0xd0, 0, 0, dnssecOk ? 0x80 : 0, 0, 0, 0);
  return Buffer.from(parts);
}

export function buildSamples(count: number, tag = ''): Sample[] {
  const out: Sample[] = [];
  for (let i = 0; i < count; i++) {
    const name = tag === '' ? randomName() : `${tag}${i.toString(36)}.${randomName()}`;
    const qtype = rnd() < 0.7 ? 'A' : 'AAAA';
    const edns = rnd() < 0.9;
    const dnssecOk = edns && rnd() < 0.3;
    const options = edns && rnd() < 0.5 ? [{ code: 10, data: Buffer.from([1, 2, 3, 4, 5, 6, 7, 8]) }] : [];
    const query = dnsPacket.encode({
      id: i & 0xffff,
      type: 'query',
      flags: dnsPacket.RECURSION_DESIRED,
      questions: [{ name: mixCase(name), type: qtype, class: 'IN' }],
      additionals: edns
        ? [{ type: 'OPT', name: '.', udpPayloadSize: 1232, flags: dnssecOk ? dnsPacket.DNSSEC_OK : 0, options } as dnsPacket.Answer]
        : [],
    });
    out.push({ name, qtype, query, raw: new Uint8Array(query), response: buildResponse(i & 0xffff, name, qtype, 1 + Math.floor(rnd() * 3), dnssecOk) });
  }
  return out;
}

