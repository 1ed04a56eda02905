/**
 * Edge safety end to end, tried as an attacker would in the three-host lab: access lists
 * over UDP and TCP, own addresses only (transit passes through, the upstream side is not
 * served, addresses are followed), a spoofed flood of a hot name against response rate
 * limiting while another network keeps every answer, responders that answer everything,
 * and a second instance on the same interface.
 */
import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describePrivileged } from '../helpers/privilege.js';
import { ADDR, Lab, suiteService, type Service } from '../helpers/lab.js';

const M_XDP = 'heimdall_responses_total{path="xdp"}';
const xdp = (m: Record<string, number>, outcome: string) => m[`heimdall_xdp_packets_total{outcome="${outcome}"}`] ?? 0;

/** Client addresses the access lists treat differently (all on the client's veth). */
const REFUSED4 = '198.18.0.150';
const DENIED4 = '198.18.0.201';
const VICTIM4 = '198.18.7.7';
const RATE = 1000;

describePrivileged('edge safety in the lab', { netns: true, tools: ['dig', 'dnsperf', 'nsd', 'curl', 'nft', 'g++'] }, () => {
  const lab = new Lab('e');
  let svc: Service;
  const tmp = mkdtempSync(join(tmpdir(), 'hx-edge-'));
  const clientIf = () => `${lab.prefix}c0`;
  const up = `${ADDR.upstream4},[${ADDR.upstream6}]`;

  suiteService(
    lab,
    {
      zone: 200,
      args: [
        '--upstream', up, '--metrics-listen', '127.0.0.1:9153',
        '--allow', '198.18.0.0/25,198.18.7.0/24,fd00::/8', '--deny', '198.18.0.200/29', '--rrl', String(RATE),
      ],
      setup: () => {
        for (const a of [REFUSED4, DENIED4, `${VICTIM4}/32`]) lab.exec('client', 'ip', ['addr', 'add', a.includes('/') ? a : `${a}/24`, 'dev', clientIf()]);
      },
      cleanup: () => rmSync(tmp, { recursive: true, force: true }),
    },
    (s) => (svc = s),
  );

  const dig = (args: string[], from?: string, server = ADDR.appliance4) => lab.dig([...(from ? ['-b', from] : []), ...args], server);

  /** Asks until XDP answers the name (promotion after three asks), so it is hot. */
  function makeHot(name: string): void {
    for (let i = 0; i < 20; i++) {
      const before = svc.metrics()[M_XDP] ?? 0;
      expect(dig([name, 'A'])).toMatch(/status: NOERROR/);
      if ((svc.metricsWhen((m) => (m[M_XDP] ?? 0) > before, 1500)[M_XDP] ?? 0) > before) return;
    }
    throw new Error(`${name} never became hot`);
  }

  describe('access lists', () => {
    it('answers an allowed client, refuses one in no list, and drops a denied one: UDP and TCP', () => {
      const before = svc.metrics();
      expect(dig(['www.lab.example', 'A'])).toMatch(/status: NOERROR/);
      for (const tcp of [[], ['+tcp']]) {
        const refused = dig(['www.lab.example', 'A', ...tcp], REFUSED4);
        expect(refused).toMatch(/status: REFUSED/);
        expect(refused).toMatch(/ANSWER: 0/);
        const denied = dig(['www.lab.example', 'A', ...tcp], DENIED4);
        expect(denied).not.toMatch(/status:/);
      }
      const after = svc.metricsWhen((m) => (m['heimdall_tcp_connections_total{event="denied"}'] ?? 0) > 0);
      expect(xdp(after, 'TX_REFUSED') - xdp(before, 'TX_REFUSED')).toBeGreaterThanOrEqual(1);
      expect(xdp(after, 'DROP_DENIED') - xdp(before, 'DROP_DENIED')).toBeGreaterThanOrEqual(1);
      expect(after['heimdall_edge_replies_total{kind="refused"}']).toBeGreaterThanOrEqual(1); // TCP
      // TCP: a denied source's connection is reset at accept, before any query is read.
      expect(after['heimdall_tcp_connections_total{event="denied"}']).toBeGreaterThanOrEqual(1);
    }, 30_000);
  });

  describe('own addresses only', () => {
    it('lets a query to another server pass through to that server, untouched', () => {
      // The client routes the upstream's network through the appliance, which forwards.
      lab.exec('appliance', 'sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
      lab.exec('client', 'ip', ['route', 'add', '198.18.1.0/24', 'via', ADDR.appliance4]);
      lab.exec('upstream', 'ip', ['route', 'add', '198.18.0.0/24', 'via', '198.18.1.1']);
      try {
        const before = svc.metrics();
        const out = dig(['www.lab.example', 'A'], undefined, ADDR.upstream4);
        expect(out).toMatch(/status: NOERROR/);
        expect(out).toMatch(/flags: qr aa/); // NSD's own answer: heimdall never sets AA
        const after = svc.metricsWhen((m) => xdp(m, 'PASS_NOT_LOCAL') > xdp(before, 'PASS_NOT_LOCAL'));
        expect(xdp(after, 'PASS_NOT_LOCAL')).toBeGreaterThan(xdp(before, 'PASS_NOT_LOCAL'));
      } finally {
        lab.exec('client', 'ip', ['route', 'del', '198.18.1.0/24']);
        lab.exec('upstream', 'ip', ['route', 'del', '198.18.0.0/24']);
        lab.exec('appliance', 'sysctl', ['-qw', 'net.ipv4.ip_forward=0']);
      }
    }, 30_000);

    it('binds the served addresses only: nothing listens on the upstream side or the wildcard', () => {
      const ss = lab.exec('appliance', 'ss', ['-lntuH', 'sport', '=', ':53']);
      expect(ss).toMatch(/198\.18\.0\.1:53/);
      expect(ss).not.toMatch(/198\.18\.1\.1:53|0\.0\.0\.0:53|\*:53|\[::\]:53/);
      expect(lab.exec('upstream', 'dig', ['@198.18.1.1', '+tries=1', '+time=1', 'www.lab.example'])).not.toMatch(/status:/);
    });

    it('follows the interface: an address added is served within seconds, and dropped when removed', async () => {
      const extra = '198.18.0.9';
      lab.exec('appliance', 'ip', ['addr', 'add', `${extra}/24`, 'dev', lab.applianceIf]);
      try {
        let ok = false;
        for (let i = 0; i < 20 && !ok; i++) {
          ok = /status: NOERROR/.test(dig(['www.lab.example', 'A'], undefined, extra));
          if (!ok) await new Promise((r) => setTimeout(r, 500));
        }
        expect(ok).toBe(true);
      } finally {
        lab.exec('appliance', 'ip', ['addr', 'del', `${extra}/24`, 'dev', lab.applianceIf]);
      }
      await new Promise((r) => setTimeout(r, 3000));
      expect(lab.exec('appliance', 'ss', ['-lnuH', 'sport', '=', ':53'])).not.toMatch(/198\.18\.0\.9:53/);
    }, 30_000);
  });

  describe('reflection', () => {
    it('gives a spoofed flood of a hot name at its victim no more than the rate plus slips, while another network keeps every answer', () => {
      makeHot('www.lab.example');
      const bin = join(tmp, 'spoof');
      execFileSync('g++', ['-O2', '-x', 'c++', '-o', bin, fileURLToPath(new URL('./tools/spoof.c', import.meta.url))]);
      // Count what reaches the victim, answers and truncated slips apart (TC: bit 22 of
      // the DNS header), in the kernel of the client namespace.
      const nft = (args: string) => lab.exec('client', 'nft', args.split(' '));
      nft('add table inet hxv');
      nft('add chain inet hxv in { type filter hook input priority 0 ; }');
      nft(`add rule inet hxv in ip daddr ${VICTIM4} udp sport 53 @ih,22,1 1 counter drop`);
      nft(`add rule inet hxv in ip daddr ${VICTIM4} udp sport 53 counter drop`);
      const before = svc.metrics();
      const secs = 3;
      writeFileSync(join(tmp, 'legit'), 'www.lab.example A\n');
      // The flood in the background, and meanwhile a client of another network asks the
      // same name at 300 q/s.
      const flood = execFileSync('ip', ['netns', 'exec', lab.ns.client, 'sh', '-c',
        `${bin} ${VICTIM4} 40000 ${ADDR.appliance4} www.lab.example 300000 ${secs} & ` +
        `dnsperf -s ${ADDR.appliance4} -d ${join(tmp, 'legit')} -l ${secs} -Q 300 -t 2 -c 1; wait`], { encoding: 'utf8', timeout: 60_000 });
      const sent = Number(/^(\d+)$/m.exec(flood)?.[1]);
      const lsent = Number(/Queries sent:\s+(\d+)/.exec(flood)?.[1]);
      const ldone = Number(/Queries completed:\s+(\d+)/.exec(flood)?.[1]);
      const counters = nft('list chain inet hxv in');
      const [tc, answers] = [...counters.matchAll(/counter packets (\d+)/g)].map((m) => Number(m[1]));
      nft('delete table inet hxv');
      const after = svc.metricsWhen((m) => xdp(m, 'DROP_RATE_LIMITED') > xdp(before, 'DROP_RATE_LIMITED'));
      const slips = xdp(after, 'TX_SLIP') - xdp(before, 'TX_SLIP');
      const limited = xdp(after, 'DROP_RATE_LIMITED') - xdp(before, 'DROP_RATE_LIMITED');
      const report = `flood sent ${sent}, victim got ${answers} answers and ${tc} truncated; XDP limited ${limited}, slipped ${slips}; legit ${ldone}/${lsent}`;
      console.log(report);
      expect(sent, report).toBeGreaterThan(100_000 * secs); // the flood really was one
      expect(answers, report).toBeLessThanOrEqual(RATE * (secs + 1));
      expect(tc, report).toBeLessThanOrEqual(slips);
      expect(slips, report).toBeGreaterThan(0);
      expect(Math.abs(slips - limited), report).toBeLessThanOrEqual(limited * 0.05 + 10); // slip 2: every other limited response
      expect(lsent, report).toBeGreaterThan(300 * (secs - 1));
      expect(ldone, report).toBe(lsent);
      expect(flood, report).toMatch(/NOERROR \d+ \(100\.00%\)/);
    }, 90_000);

    it('starts no loop with a responder that answers everything with junk, or echoes', () => {
      // Each responder answers every datagram it gets on its port and counts them; the
      // first datagram goes out from its own socket, as a spoofed one would arrive.
      const script = (mode: string, port: number) =>
        `const d=require('dgram');const s=d.createSocket('udp4');let got=0;` +
        `s.on('message',(m,r)=>{got++;s.send(${mode === 'junk' ? "Buffer.from('chargen: !\"#$%&()*+,-./0123456789:;<=>?@ABCDEFG')" : 'm'},r.port,r.address);});` +
        `s.bind(${port},'${ADDR.client4}',()=>{s.send(${mode === 'junk' ? "Buffer.from('junk junk junk junk')" : 'Buffer.from(process.argv[1],"hex")'},53,'${ADDR.appliance4}');` +
        `setTimeout(()=>{console.log(got);process.exit(0)},2500)});`;
      const q = Buffer.from('abcd0100000100000000000003777777036c6162076578616d706c650000010001', 'hex').toString('hex');
      const before = svc.metrics();
      const junk = Number(lab.exec('client', process.execPath, ['-e', script('junk', 1919)]).trim());
      const echo = Number(lab.exec('client', process.execPath, ['-e', script('echo', 7777), q]).trim());
      expect(junk).toBe(0); // junk is never answered, not even with FORMERR
      expect(echo).toBe(1); // the answer to the query; its echo (a response) is dropped
      const after = svc.metricsWhen((m) => xdp(m, 'DROP_RESPONSE') > xdp(before, 'DROP_RESPONSE'));
      expect(xdp(after, 'DROP_RESPONSE')).toBeGreaterThan(xdp(before, 'DROP_RESPONSE'));
    }, 30_000);
  });

  describe('one owner per interface', () => {
    it('refuses a second instance naming the first, which keeps its XDP answers', async () => {
      makeHot('mail.lab.example');
      const r = await lab.cli(['attach', lab.applianceIf, '--upstream', up, '--port', '5353']);
      expect(r.code).toBe(1);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(new RegExp(`already served by heimdall-xdp \\(pid ${svc.proc.pid}\\)`));
      const before = svc.metrics()[M_XDP] ?? 0;
      expect(dig(['mail.lab.example', 'A'])).toMatch(/status: NOERROR/);
      expect(svc.metricsWhen((m) => (m[M_XDP] ?? 0) > before)[M_XDP]).toBeGreaterThan(before);
      expect(lab.exec('appliance', 'ip', ['link', 'show', lab.applianceIf])).toMatch(/prog\/xdp/);
    }, 60_000);
  });
});
