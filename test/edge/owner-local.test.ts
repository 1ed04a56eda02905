import { describe, expect, it } from 'vitest';
import { claimInterface, interfaceOwner } from '../../src/edge/owner.js';
import { ServedAddresses, type Served } from '../../src/edge/local.js';
import { parseAddr } from '../../src/net/addr.js';

describe('one owner per interface', () => {
  it('refuses a second claim naming the live owner, allows it with force, and frees it on release', async () => {
    const iface = `hxtest${process.pid}`;
    expect(await interfaceOwner(iface)).toBeNull();
    const first = await claimInterface(iface, false);
    expect(await interfaceOwner(iface)).toBe(process.pid);
    await expect(claimInterface(iface, false)).rejects.toMatchObject({ code: 'E_IFACE_OWNED', message: expect.stringContaining(`pid ${process.pid}`) });
    const forced = await claimInterface(iface, true);
    await forced.release();
    await first.release();
    expect(await interfaceOwner(iface)).toBeNull();
    const again = await claimInterface(iface, false);
    await again.release();
  });
});

describe('served addresses', () => {
  const s = (t: string): Served => ({ text: t, addr: parseAddr(t)! });

  it('reports the first reading, then only changes', async () => {
    let now = [s('198.18.0.1'), s('fd00::1')];
    const seen: string[] = [];
    const sa = new ServedAddresses('x', null, (all, added, removed) => {
      seen.push(`${all.length} +${added.map((a) => a.text).join(',')} -${removed.map((a) => a.text).join(',')}`);
    }, () => now);
    await sa.start();
    await sa.poll();
    now = [s('198.18.0.1'), s('198.18.0.5')];
    await sa.poll();
    await sa.stop();
    expect(seen).toEqual(['2 +198.18.0.1,fd00::1 -', '2 +198.18.0.5 -fd00::1']);
    expect(sa.list.map((a) => a.text)).toEqual(['198.18.0.1', '198.18.0.5']);
  });

  it('reports an address again after retry() (its bind failed: still in duplicate address detection)', async () => {
    const added: string[] = [];
    const sa = new ServedAddresses('x', null, (_all, a) => void added.push(...a.map((x) => x.text)), () => [s('fe80::1%x')]);
    await sa.start();
    sa.retry(sa.list[0]!);
    await sa.poll();
    await sa.poll();
    await sa.stop();
    expect(added).toEqual(['fe80::1%x', 'fe80::1%x']);
  });

  it('reports an empty first reading (the caller refuses to start), and holds a fixed list', async () => {
    const seen: number[] = [];
    const empty = new ServedAddresses('x', null, (all) => void seen.push(all.length), () => []);
    await empty.start();
    await empty.stop();
    const fixed = new ServedAddresses('x', ['198.18.0.9'], (all) => void seen.push(all.length), () => [s('198.18.0.1')]);
    await fixed.start();
    await fixed.stop();
    expect(seen).toEqual([0, 1]);
    expect(fixed.list[0]!.text).toBe('198.18.0.9');
  });
});
