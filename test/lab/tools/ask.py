"""
Asks a list of DNS queries of several servers, in rounds, one exchange at a time, and
prints what each server answered as JSON. Used by test/lab/differential.test.ts from the
lab's client namespace.

stdin: {"servers": [["198.18.0.1", 53], ...], "queries": [{"wire": hex, "tcp": bool}, ...],
        "rounds": n, "timeout": seconds}
stdout: {"answers": [round][query][server] -> hex of the reply, or null if none came}

Over UDP a reply counts only if it comes from the server asked and carries the query's ID
(anything else is read and ignored until the timeout). Over TCP the query goes out with
its two-byte length and one framed reply is read.
"""
import json
import socket
import struct
import sys
import time


def ask_udp(server, wire, timeout):
    fam = socket.AF_INET6 if ':' in server[0] else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_DGRAM)
    try:
        s.sendto(wire, (server[0], server[1]))
        deadline = time.time() + timeout
        while True:
            left = deadline - time.time()
            if left <= 0:
                return None
            s.settimeout(left)
            try:
                data, src = s.recvfrom(65535)
            except socket.timeout:
                return None
            if src[0] == server[0] and src[1] == server[1] and data[:2] == wire[:2]:
                return data.hex()
    finally:
        s.close()


def read_exact(s, n):
    buf = b''
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def ask_tcp(server, wire, timeout):
    fam = socket.AF_INET6 if ':' in server[0] else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect((server[0], server[1]))
        s.sendall(struct.pack('>H', len(wire)) + wire)
        head = read_exact(s, 2)
        if head is None:
            return None
        body = read_exact(s, struct.unpack('>H', head)[0])
        return body.hex() if body is not None else None
    except (socket.timeout, OSError):
        return None
    finally:
        s.close()


def main():
    job = json.load(sys.stdin)
    servers = [tuple(x) for x in job['servers']]
    timeout = float(job.get('timeout', 2))
    answers = []
    for _ in range(int(job['rounds'])):
        rnd = []
        for q in job['queries']:
            wire = bytes.fromhex(q['wire'])
            ask = ask_tcp if q.get('tcp') else ask_udp
            rnd.append([ask(server, wire, timeout) for server in servers])
        answers.append(rnd)
    json.dump({'answers': answers}, sys.stdout)


main()
