// A hostile upstream for the lab (test/lab/forged.test.ts): answers every query for an A
// with the right ID and the question echoed as it came (so 0x20 passes), the A asked for
// (198.18.70.1), and forged extras riding on it, as in issue 13: `bank.example NS
// ns.evil.example` in authority, `www.bank.example A 198.18.66.6` and `ns.evil.example A
// 198.18.66.7` in additional. Names starting with "lower-" get their question echoed
// lowercased (an upstream that does not preserve 0x20 case); names starting with
// "badcookie-" get first an answer echoing a client cookie that is not ours, then 30 ms
// later the right one with our client cookie and a server cookie. Plain node, no
// dependencies.
//   node forging-upstream.mjs ADDR PORT     (prints "ready" once bound)
import dgram from 'node:dgram';

const [addr, port] = process.argv.slice(2);
const sock = dgram.createSocket(addr.includes(':') ? 'udp6' : 'udp4');
const name = (text) => Buffer.concat([...text.split('.').map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l, 'latin1')])), Buffer.from([0])]);
const rr = (owner, type, ttl, rdata) => {
  const f = Buffer.alloc(10);
  f.writeUInt16BE(type, 0);
  f.writeUInt16BE(1, 2);
  f.writeUInt32BE(ttl, 4);
  f.writeUInt16BE(rdata.length, 8);
  return Buffer.concat([owner, f, rdata]);
};
const OPT = Buffer.from([0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
const SERVER_COOKIE = Buffer.from('5e5e5e5e5e5e5e5e', 'hex');

/** An OPT carrying a COOKIE option. */
function optWithCookie(cookie) {
  const o = Buffer.alloc(11 + 4 + cookie.length);
  OPT.copy(o, 0);
  o.writeUInt16BE(4 + cookie.length, 9);
  o.writeUInt16BE(10, 11);
  o.writeUInt16BE(cookie.length, 13);
  cookie.copy(o, 15);
  return o;
}

/** The client cookie of the query's OPT (the OPT right after the question), or null. */
function clientCookie(q, p) {
  if (q.length < p + 11 || q.readUInt16BE(p + 1) !== 41) return null;
  let o = p + 11;
  const end = o + q.readUInt16BE(p + 9);
  while (o + 4 <= end) {
    const code = q.readUInt16BE(o);
    const len = q.readUInt16BE(o + 2);
    if (code === 10 && len >= 8) return Buffer.from(q.subarray(o + 4, o + 12));
    o += 4 + len;
  }
  return null;
}

sock.on('message', (q, from) => {
  if (q.length < 17) return;
  let p = 12;
  while (p < q.length && q[p] !== 0) p += q[p] + 1;
  p += 5;
  if (p > q.length) return;
  const head = Buffer.from(q.subarray(0, p));
  head[2] = 0x81; // QR, RD
  head[3] = 0x80; // RA
  head.writeUInt16BE(1, 6);
  head.writeUInt16BE(1, 8);
  head.writeUInt16BE(3, 10);
  const label = q.toString('latin1', 13, 13 + q[12]).toLowerCase();
  if (label.startsWith('lower-')) {
    for (let i = 12; i < p - 5; i++) if (head[i] >= 0x41 && head[i] <= 0x5a) head[i] |= 0x20;
  }
  const body = (opt) =>
    Buffer.concat([
      head,
      rr(Buffer.from([0xc0, 12]), 1, 300, Buffer.from([198, 18, 70, 1])),
      rr(name('bank.example'), 2, 86400, name('ns.evil.example')),
      rr(name('www.bank.example'), 1, 86400, Buffer.from([198, 18, 66, 6])),
      rr(name('ns.evil.example'), 1, 86400, Buffer.from([198, 18, 66, 7])),
      opt,
    ]);
  const send = (m) => sock.send(m, from.port, from.address);
  const mine = clientCookie(q, p);
  if (label.startsWith('badcookie-') && mine !== null) {
    const other = Buffer.from(mine);
    other[0] ^= 0xff;
    send(body(optWithCookie(Buffer.concat([other, SERVER_COOKIE]))));
    setTimeout(() => send(body(optWithCookie(Buffer.concat([mine, SERVER_COOKIE])))), 30);
    return;
  }
  send(body(mine === null ? OPT : optWithCookie(Buffer.concat([mine, SERVER_COOKIE]))));
});
sock.bind(Number(port), addr, () => console.log('ready'));
