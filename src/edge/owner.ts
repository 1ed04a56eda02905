/**
 * One owner per interface. A running `attach` holds an abstract unix socket named after
 * its interface; the kernel frees it when the process ends, however it ends, so holding
 * it proves the owner is alive (a program's name proves nothing: a second instance used
 * to take a live one's program for a stale one and remove it). Abstract sockets belong
 * to a network namespace, as interfaces do, so two namespaces' `eth0` never clash.
 *
 * Whoever finds the name taken connects to it and reads the owner's PID, for the error.
 */
import net from 'node:net';
import { HeimdallError } from '../errors.js';

export interface InterfaceClaim {
  release(): Promise<void>;
}

function socketName(iface: string): string {
  return `\0heimdall-xdp/${iface}`;
}

/** The PID of the process owning iface, or null when nobody does. */
export async function interfaceOwner(iface: string): Promise<number | null> {
  return new Promise((resolve) => {
    const c = net.connect(socketName(iface));
    let text = '';
    const done = (pid: number | null): void => {
      c.destroy();
      resolve(pid);
    };
    c.setTimeout(2000, () => done(null));
    c.on('data', (d) => {
      text += d.toString('utf8');
    });
    c.on('end', () => {
      const pid = Number(text.trim());
      done(Number.isInteger(pid) && pid > 0 ? pid : 0);
    });
    c.on('error', () => done(null));
  });
}

/**
 * Claims iface for this process. When a live process has it: throws E_IFACE_OWNED
 * naming it, or with force goes on without the claim (the caller replaces its program).
 */
export async function claimInterface(iface: string, force: boolean): Promise<InterfaceClaim> {
  const server = net.createServer((c) => c.end(`${process.pid}\n`));
  server.unref();
  const taken = await new Promise<boolean>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) => (e.code === 'EADDRINUSE' ? resolve(true) : reject(e)));
    server.listen(socketName(iface), () => resolve(false));
  });
  if (!taken) return { release: () => new Promise<void>((r) => server.close(() => r())) };
  const pid = await interfaceOwner(iface);
  if (!force) {
    const who = pid ? `heimdall-xdp (pid ${pid})` : 'another heimdall-xdp';
    throw new HeimdallError('E_IFACE_OWNED', `interface '${iface}' is already served by ${who}; stop it first, or use --force to take the interface over`);
  }
  return { release: async () => {} };
}
