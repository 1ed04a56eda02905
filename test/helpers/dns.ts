/** DNS messages for tests, made with dns-packet (the oracle), and cached answers from them. */
import dnsPacket from 'dns-packet';
import { answerFromResponse, type CachedAnswer, type TtlPolicy } from '../../src/dns/answer.js';

export interface QueryOptions {
  id?: number;
  rd?: boolean;
  cd?: boolean;
  ad?: boolean;
  /** Add an OPT: UDP size and DO. */
  edns?: { udpSize?: number; do?: boolean; options?: dnsPacket.PacketOpt[] };
  qclass?: string;
}

export function query(name: string, type: string, o: QueryOptions = {}): Buffer {
  let flags = o.rd === false ? 0 : dnsPacket.RECURSION_DESIRED;
  if (o.cd) flags |= dnsPacket.CHECKING_DISABLED;
  if (o.ad) flags |= dnsPacket.AUTHENTIC_DATA;
  const additionals: dnsPacket.Answer[] = [];
  if (o.edns) {
    additionals.push({
      type: 'OPT',
      name: '.',
      udpPayloadSize: o.edns.udpSize ?? 1232,
      flags: o.edns.do ? dnsPacket.DNSSEC_OK : 0,
      options: o.edns.options ?? [],
    } as unknown as dnsPacket.Answer);
  }
  return dnsPacket.encode({
    type: 'query',
    id: o.id ?? 0x4242,
    flags,
    questions: [{ name, type: type as dnsPacket.RecordType, class: (o.qclass ?? 'IN') as dnsPacket.RecordClass }],
    additionals,
  });
}

/** dns-packet encodes the RCODE only from the flags word. */
const RCODES: Record<string, number> = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 };

export interface ResponseOptions {
  rcode?: keyof typeof RCODES;
  ad?: boolean;
  /** Echo an OPT with DO set (the upstream answered a DO query). */
  dnssecOk?: boolean;
}

export function response(
  name: string,
  type: string,
  sections: { answers?: dnsPacket.Answer[]; authorities?: dnsPacket.Answer[]; additionals?: dnsPacket.Answer[] },
  o: ResponseOptions = {},
): Buffer {
  let flags = dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE | RCODES[o.rcode ?? 'NOERROR']!;
  if (o.ad) flags |= dnsPacket.AUTHENTIC_DATA;
  const additionals = [...(sections.additionals ?? [])];
  if (o.dnssecOk !== undefined) {
    additionals.push({ type: 'OPT', name: '.', udpPayloadSize: 1232, flags: o.dnssecOk ? dnsPacket.DNSSEC_OK : 0, options: [] } as unknown as dnsPacket.Answer);
  }
  return dnsPacket.encode({
    type: 'response',
    id: 1,
    flags,
    rcode: o.rcode ?? 'NOERROR',
    questions: [{ name, type: type as dnsPacket.RecordType, class: 'IN' }],
    answers: sections.answers ?? [],
    authorities: sections.authorities ?? [],
    additionals,
  } as dnsPacket.Packet);
}

export function cached(msg: Uint8Array, originNs: number, policy?: Partial<TtlPolicy>, dnssecOk?: boolean): CachedAnswer {
  return answerFromResponse(msg, originNs, policy, dnssecOk);
}

export const SOA = (zone: string, ttl: number, minimum: number): dnsPacket.Answer => ({
  type: 'SOA',
  name: zone,
  ttl,
  data: { mname: `ns1.${zone}`, rname: `hostmaster.${zone}`, serial: 2026112901, refresh: 3600, retry: 600, expire: 86400, minimum },
});

/** A record as dns-packet decodes it, typed loosely enough to read any type's fields. */
export interface DecodedRR {
  name: string;
  type: string;
  ttl?: number;
  class?: string;
  data?: unknown;
  [field: string]: unknown;
}

/** A message as dns-packet decodes it. */
export interface Decoded {
  id: number;
  type: 'query' | 'response';
  flags: number;
  rcode: string;
  questions: { name: string; type: string; class: string }[];
  answers: DecodedRR[];
  authorities: DecodedRR[];
  additionals: DecodedRR[];
  raw: Buffer;
}

/** dns-packet's decode (the oracle), with the raw bytes kept alongside. */
export function decode(raw: Uint8Array): Decoded {
  const b = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
  return Object.assign(dnsPacket.decode(b) as unknown as Decoded, { raw: b });
}

/** An EDNS option for queries (dns-packet's types want fields its encoder does not need). */
export const ednsOption = (code: number, data: Buffer): dnsPacket.PacketOpt => ({ code, data }) as unknown as dnsPacket.PacketOpt;
