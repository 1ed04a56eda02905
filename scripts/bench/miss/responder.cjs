// A fast local upstream for scripts/bench/miss-path.ts: answers every query on
// 127.0.0.1 from a template (the question copied byte for byte, so 0x20 case is
// echoed; one A record, TTL 300; an OPT), in its own process so its CPU is not
// the client's. Prints its port, then serves until killed.
const dgram = require('node:dgram');
const s = dgram.createSocket('udp4');
const tail = Buffer.from([
  0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 1, 0x2c, 0, 4, 198, 18, 0, 1, // A 198.18.0.1, TTL 300
  0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0, // OPT, 1232, no options
]);
const out = Buffer.alloc(600);
s.on('message', (m, r) => {
  if (m.length < 17) return;
  let p = 12;
  while (p < m.length && m[p] !== 0) p += m[p] + 1;
  const qend = p + 5;
  if (qend > m.length) return;
  m.copy(out, 0, 0, qend);
  out[2] = 0x80 | (m[2] & 0x01); // QR, RD as asked
  out[3] = 0x80; // RA, NOERROR
  out[4] = 0; out[5] = 1; out[6] = 0; out[7] = 1; out[8] = 0; out[9] = 0; out[10] = 0; out[11] = 1;
  tail.copy(out, qend);
  s.send(out.subarray(0, qend + tail.length), r.port, r.address);
});
s.bind(0, '127.0.0.1', () => console.log(s.address().port));
