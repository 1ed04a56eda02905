// A UDP DNS relay for the lab's upstream namespace: each query is held `delay` ms, then
// sent to the real upstream from a socket of its own, and the answer relayed back. It
// prints one line per query it receives ("q <ms since start> <qname>"), so a test can
// count what reached the upstream, name by name.
//   node delay-proxy.mjs <listen-host> <listen-port> <target-host> <target-port> <delay-ms>
import dgram from 'node:dgram';

const [host, port, targetHost, targetPort, delay] = process.argv.slice(2);
const start = performance.now();
const server = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');

function qname(msg) {
  const labels = [];
  let p = 12;
  while (p < msg.length && msg[p] !== 0 && labels.length < 128) {
    labels.push(msg.subarray(p + 1, p + 1 + msg[p]).toString('latin1'));
    p += 1 + msg[p];
  }
  return labels.join('.').toLowerCase() || '.';
}

server.on('message', (msg, from) => {
  process.stdout.write(`q ${Math.round(performance.now() - start)} ${qname(msg)}\n`);
  setTimeout(() => {
    const out = dgram.createSocket(targetHost.includes(':') ? 'udp6' : 'udp4');
    const done = setTimeout(() => out.close(), 3000);
    out.on('message', (answer) => {
      clearTimeout(done);
      server.send(answer, from.port, from.address, () => out.close());
    });
    out.send(msg, Number(targetPort), targetHost);
  }, Number(delay));
});
server.bind(Number(port), host, () => process.stdout.write('ready\n'));
process.on('SIGTERM', () => process.exit(0));
