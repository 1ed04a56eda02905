/**
 * DNS query load from the client namespace, for the AF_XDP lab tests:
 *   node --import tsx flood.ts '{"server":"198.18.0.1","sockets":16,"perSocket":100,"waitMs":3000}'
 * Opens `sockets` UDP sockets (so many source ports, spread over the appliance's rx
 * queues), sends perSocket queries on each in small bursts, and counts replies that
 * echo a query it sent (ID and question) with QR set. With `spreadMs` the queries are
 * paced over that time instead of sent at once. Prints one JSON line and exits.
 */
import dgram from 'node:dgram';
import { isIPv6 } from 'node:net';
import dnsPacket from 'dns-packet';

interface Args {
  server: string;
  port?: number;
  sockets?: number;
  perSocket?: number;
  waitMs?: number;
  spreadMs?: number;
}

const args = JSON.parse(process.argv[2] ?? '{}') as Args;
const nSock = args.sockets ?? 16;
const per = args.perSocket ?? 100;
const port = args.port ?? 53;
const family = isIPv6(args.server) ? 'udp6' : 'udp4';
let sent = 0;
let received = 0;
let bad = 0;
const localPorts = new Set<number>();
const burst = 16;

function queryFor(sock: number, i: number): Buffer {
  return dnsPacket.encode({
    type: 'query',
    id: (sock * per + i) & 0xffff,
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ name: `q${i}.s${sock}.flood.example`, type: 'A', class: 'IN' }],
  });
}

async function run(): Promise<void> {
  const socks = await Promise.all(
    Array.from({ length: nSock }, (_, s) => {
      const sock = dgram.createSocket(family);
      const seen = new Uint8Array(per);
      sock.on('message', (msg) => {
        try {
          const p = dnsPacket.decode(msg);
          const i = (p.id ?? -1) - ((s * per) & 0xffff);
          const q = p.questions?.[0];
          if (p.type === 'response' && i >= 0 && i < per && !seen[i] && q?.name === `q${i}.s${s}.flood.example`) {
            seen[i] = 1;
            received++;
          } else bad++;
        } catch {
          bad++;
        }
      });
      return new Promise<dgram.Socket>((resolve) => sock.bind(0, () => resolve(sock)));
    }),
  );
  for (const s of socks) localPorts.add(s.address().port);
  const total = nSock * per;
  const pause = args.spreadMs ? (args.spreadMs * burst) / total : 0;
  for (let i = 0; i < per; i += burst) {
    for (let s = 0; s < nSock; s++) {
      for (let j = i; j < Math.min(per, i + burst); j++) {
        socks[s]!.send(queryFor(s, j), port, args.server);
        sent++;
      }
    }
    await new Promise((r) => (pause ? setTimeout(r, pause * nSock) : setImmediate(r)));
  }
  const deadline = Date.now() + (args.waitMs ?? 3000);
  while (received < total && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  for (const s of socks) s.close();
  process.stdout.write(JSON.stringify({ sent, received, bad, sockets: localPorts.size }) + '\n');
}

void run();
