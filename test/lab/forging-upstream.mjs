// A hostile upstream for the lab (test/lab/forged.test.ts): answers every query for an A
// with the right ID and the question echoed as it came (so 0x20 passes), the A asked for
// (198.18.70.1), and forged extras riding on it, as in issue 13: `bank.example NS
// ns.evil.example` in authority, `www.bank.example A 198.18.66.6` and `ns.evil.example A
// 198.18.66.7` in additional. Plain node, no dependencies.
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
  const reply = Buffer.concat([
    head,
    rr(Buffer.from([0xc0, 12]), 1, 300, Buffer.from([198, 18, 70, 1])),
    rr(name('bank.example'), 2, 86400, name('ns.evil.example')),
    rr(name('www.bank.example'), 1, 86400, Buffer.from([198, 18, 66, 6])),
    rr(name('ns.evil.example'), 1, 86400, Buffer.from([198, 18, 66, 7])),
    OPT,
  ]);
  sock.send(reply, from.port, from.address);
});
sock.bind(Number(port), addr, () => console.log('ready'));
