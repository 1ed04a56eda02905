/**
 * The addresses the service answers on. With --listen they are fixed; otherwise they are
 * every address of the interface, read again every POLL_MS so that an address added or
 * removed while running is served or dropped within that time. Whoever serves them (the
 * XDP program's local sets, the kernel listeners) is told of each change.
 */
import { networkInterfaces } from 'node:os';
import { formatAddr, parseAddr, type Addr } from '../net/addr.js';

export const POLL_MS = 2000;

/** An address to bind: its text (link-local IPv6 with %iface) and its parsed form. */
export interface Served {
  text: string;
  addr: Addr;
}

/** The interface's addresses now (empty when it has none, or does not exist). */
export function interfaceAddresses(iface: string): Served[] {
  const out: Served[] = [];
  for (const ni of networkInterfaces()[iface] ?? []) {
    const addr = parseAddr(ni.address);
    if (!addr) continue;
    const linkLocal = addr.family === 6 && addr.bytes[0] === 0xfe && (addr.bytes[1]! & 0xc0) === 0x80;
    out.push({ text: formatAddr(addr) + (linkLocal ? `%${iface}` : ''), addr });
  }
  return out;
}

export function fixedAddresses(list: readonly string[]): Served[] {
  return list.map((text) => ({ text, addr: parseAddr(text)! }));
}

export type ServedListener = (all: Served[], added: Served[], removed: Served[]) => Promise<void> | void;

/** Follows the interface's addresses (or holds the fixed list) and reports changes. */
export class ServedAddresses {
  private current = new Map<string, Served>();
  private timer: NodeJS.Timeout | undefined;
  private polling: Promise<void> = Promise.resolve();
  /** The first reading is reported even when empty. */
  private reported = false;

  constructor(
    private readonly iface: string,
    private readonly fixed: readonly string[] | null,
    private readonly onChange: ServedListener,
    private readonly read: (iface: string) => Served[] = interfaceAddresses,
  ) {}

  get list(): Served[] {
    return [...this.current.values()];
  }

  /** Reads the addresses and reports them; then, when following, polls. */
  async start(): Promise<void> {
    await this.poll();
    if (this.fixed) return;
    this.timer = setInterval(() => {
      this.polling = this.polling.then(() => this.poll()).catch((e: unknown) => {
        console.error(`heimdall-xdp: cannot follow the addresses of ${this.iface}: ${(e as Error).message}`);
      });
    }, POLL_MS);
    this.timer.unref();
  }

  /** Forgets one address, so the next reading reports it as added again (its bind failed). */
  retry(s: Served): void {
    this.current.delete(s.text);
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.polling;
  }

  /** One reading: reports the change, if any. */
  async poll(): Promise<void> {
    const now = this.fixed ? fixedAddresses(this.fixed) : this.read(this.iface);
    const next = new Map(now.map((s) => [s.text, s]));
    const added = now.filter((s) => !this.current.has(s.text));
    const removed = [...this.current.values()].filter((s) => !next.has(s.text));
    if (this.reported && added.length === 0 && removed.length === 0) return;
    this.current = next;
    this.reported = true;
    await this.onChange(now, added, removed);
  }
}
