import { describe, expect, it } from 'vitest';
import { DROP, RRL_BUCKET_BYTES, RRL_CLASS, RRL_DEFAULTS, RRL_TOKEN_ERROR, RateLimiter, SEND, SLIP, responseToken, rrlRuntime } from '../../src/edge/rrl.js';
import { parseAddr } from '../../src/net/addr.js';
import { query, response, SOA } from '../helpers/dns.js';

const SEC = 1_000_000_000;
const client = parseAddr('198.18.0.2')!;

function limiter(o: Partial<typeof RRL_DEFAULTS> = {}, buckets = 1024) {
  return new RateLimiter(new ArrayBuffer(buckets * RRL_BUCKET_BYTES), buckets, 0x1234, { ...RRL_DEFAULTS, ...o });
}

describe('rate limiter (userspace half)', () => {
  it('sends a burst of rate, then drops, slipping every slip-th', () => {
    const r = limiter({ rate: 10, slip: 3 });
    const t = 100 * SEC;
    const v = Array.from({ length: 40 }, () => r.charge(client, 1, t));
    expect(v.slice(0, 10).every((x) => x === SEND)).toBe(true);
    const rest = v.slice(10);
    expect(rest.filter((x) => x === SLIP)).toHaveLength(10);
    expect(rest.filter((x) => x === DROP)).toHaveLength(20);
    expect(rest[2]).toBe(SLIP);
  });

  it('credits time: below the rate every response goes, above it the debt keeps the flood limited', () => {
    const r = limiter({ rate: 10, slip: 0, window: 1 });
    let t = 100 * SEC;
    for (let i = 0; i < 10; i++) expect(r.charge(client, 1, t)).toBe(SEND);
    // 5/s after the burst: each gets the credit of the 200 ms before it.
    for (let i = 0; i < 20; i++) {
      t += SEC / 5;
      expect(r.charge(client, 1, t)).toBe(SEND);
    }
    // 100/s: limited responses are charged too (as BIND's RRL does), so the debt never
    // clears while the flood goes on.
    let sent = 0;
    for (let i = 0; i < 300; i++) {
      t += SEC / 100;
      if (r.charge(client, 1, t) === SEND) sent++;
    }
    expect(sent).toBeLessThanOrEqual(11);
  });

  it('keeps a flood limited for the window after it stops, and no longer', () => {
    const r = limiter({ rate: 10, slip: 0, window: 5 });
    const t = 100 * SEC;
    for (let i = 0; i < 10_000; i++) r.charge(client, 1, t);
    expect(r.charge(client, 1, t + 4 * SEC)).toBe(DROP);
    expect(r.charge(client, 1, t + 6 * SEC + SEC / 2)).toBe(SEND);
  });

  it('credits a bucket idle for weeks in full: a gap of 2^31 stamp units (~26 days) or more is time passed, not a stamp ahead', () => {
    const DAY = 86_400 * SEC;
    for (const idle of [27, 40, 51]) {
      const r = limiter({ rate: 10, slip: 0, window: 5 });
      const t = 100 * SEC;
      for (let i = 0; i < 10_000; i++) r.charge(client, 1, t); // deep in debt
      const later = t + idle * DAY;
      const v = Array.from({ length: 10 }, () => r.charge(client, 1, later));
      expect(v.every((x) => x === SEND), `${idle} days idle: a full burst`).toBe(true);
      expect(r.charge(client, 1, later)).toBe(DROP);
    }
  });

  it('gives no credit for a stamp a little ahead of now (the precise clock stamped it) and keeps that stamp', () => {
    const r = limiter({ rate: 10, slip: 0, window: 1 });
    const t = 100 * SEC;
    for (let i = 0; i < 10; i++) expect(r.charge(client, 1, t)).toBe(SEND);
    // Read 2 s behind the stamp (within the margin): no credit, as if no time had passed.
    expect(r.charge(client, 1, t - 2 * SEC)).toBe(DROP);
    // The stamp stayed at t: 500 ms later earns 500 ms (5 responses), not 2.5 s.
    const v = Array.from({ length: 8 }, () => r.charge(client, 1, t + SEC / 2));
    expect(v.filter((x) => x === SEND).length).toBeLessThanOrEqual(5);
  });

  it('counts client networks and classes apart', () => {
    const r = limiter({ rate: 2, slip: 0 });
    const t = 100 * SEC;
    for (let i = 0; i < 5; i++) r.charge(client, 1, t);
    expect(r.charge(parseAddr('198.18.0.77')!, 1, t)).toBe(DROP);
    expect(r.charge(parseAddr('198.18.1.2')!, 1, t)).toBe(SEND);
    expect(r.charge(client, 2, t)).toBe(SEND);
  });

  it('applies the ceiling over all classes when one is set', () => {
    const r = limiter({ rate: 100, allRate: 5, slip: 0 });
    const t = 100 * SEC;
    const v = Array.from({ length: 10 }, (_, i) => r.charge(client, 1000 + i, t));
    expect(v.filter((x) => x === SEND)).toHaveLength(5);
  });

  it('turns the settings into the program runtime figures', () => {
    expect(rrlRuntime({ ...RRL_DEFAULTS, rate: 1000, window: 15 })).toMatchObject({ rrlCost: 976, rrlDebt: 15 * 976562, rrlSlip: 2, rrlAllCost: 0 });
    expect(rrlRuntime({ ...RRL_DEFAULTS, rate: 0 }).rrlCost).toBe(0);
    expect(rrlRuntime({ ...RRL_DEFAULTS, rate: 1_000_000 }).rrlCost).toBe(1);
  });
});

describe('response classes', () => {
  const tok = (m: Buffer) => responseToken(m, 0, m.length);
  it('puts the same answer in one class whatever the case, and other names and types apart', () => {
    const a = tok(response('www.example.com', 'A', { answers: [{ type: 'A', name: 'www.example.com', ttl: 5, data: '198.18.0.1' }] }));
    const b = tok(response('WWW.Example.COM', 'A', { answers: [{ type: 'A', name: 'www.example.com', ttl: 9, data: '198.18.0.2' }] }));
    expect(a).toBe(b);
    expect(a >>> 24).toBe(RRL_CLASS.answer);
    expect(tok(response('www.example.com', 'AAAA', { answers: [{ type: 'AAAA', name: 'www.example.com', ttl: 5, data: 'fd00::1' }] }))).not.toBe(a);
    expect(tok(response('mail.example.com', 'A', { answers: [{ type: 'A', name: 'mail.example.com', ttl: 5, data: '198.18.0.1' }] }))).not.toBe(a);
    expect(tok(response('www.example.com', 'A', { authorities: [SOA('example.com', 60, 60)] })) >>> 24).toBe(RRL_CLASS.nodata);
  });

  it('classes NXDOMAIN by zone, so random subdomains share one', () => {
    const nx = (n: string, zone: string) => tok(response(n, 'A', { authorities: [SOA(zone, 60, 60)] }, { rcode: 'NXDOMAIN' }));
    expect(nx('a1.example', 'example')).toBe(nx('zz9.example', 'example'));
    expect(nx('a1.example', 'example')).not.toBe(nx('a1.example.org', 'example.org'));
    expect(nx('a1.example', 'example') >>> 24).toBe(RRL_CLASS.nxdomain);
  });

  it('puts every error rcode, and anything unreadable, in the error class', () => {
    expect(tok(response('x.example', 'A', {}, { rcode: 'SERVFAIL' }))).toBe(RRL_TOKEN_ERROR);
    expect(tok(response('x.example', 'A', {}, { rcode: 'REFUSED' }))).toBe(RRL_TOKEN_ERROR);
    expect(tok(query('x.example', 'A').subarray(0, 14))).toBe(RRL_TOKEN_ERROR);
    expect(responseToken(new Uint8Array(5), 0, 5)).toBe(RRL_TOKEN_ERROR);
  });
});
