#!/usr/bin/env python3
"""Per source line of a BPF program: nanoseconds of CPU per reply (bench:cpu-split, SPLIT_LINES=1).

Usage: bpf-lines.py LINES_FILE PERF_SCRIPT_FILE REPLIES_PER_S TOP

LINES_FILE is bpf-lines' output for the program (its functions' JIT addresses and the
address each source line starts at); PERF_SCRIPT_FILE is `perf script -F ip,sym` of the
samples of one CPU over a window. A sample inside one of the program's functions
is charged to the line whose code starts at or before its address. A sample's share of
all samples, times the window, over the replies made in it, is its nanoseconds per
reply. Prints the TOP lines by cost: ns per reply, share of the CPU, function, file and
line, source text. Where a load misses the cache, the stall usually shows on the first
instruction that uses what it loaded, so a line that compares a value read from a table
mostly carries that read's cost.
"""
import bisect
import collections
import sys


def main() -> None:
    lines_file, perf_file, pps, top = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
    funcs = []  # (start, end, name)
    starts = []  # (address, file:line, text)
    with open(lines_file) as f:
        for row in f:
            kind, rest = row.rstrip('\n').split(' ', 1)
            if kind == 'func':
                addr, length, name = rest.split(' ', 2)
                funcs.append((int(addr, 16), int(addr, 16) + int(length), name))
            elif kind == 'line':
                addr, num, text = (rest.split(' ', 2) + [''])[:3]
                starts.append((int(addr, 16), num, text.strip()))
    starts.sort(key=lambda s: s[0])  # stable: of two records at one address, the kernel's last wins
    addrs = [a for a, _, _ in starts]
    total = 0
    cost = collections.Counter()
    with open(perf_file) as f:
        for row in f:
            parts = row.split()
            try:
                ip = int(parts[0], 16)
            except (IndexError, ValueError):
                continue  # not a sample
            total += 1
            func = next((name for start, end, name in funcs if start <= ip < end), None)
            if func is None:
                continue
            i = bisect.bisect_right(addrs, ip) - 1
            if i < 0:
                continue
            _, num, text = starts[i]
            cost[(func, num, text)] += 1
    if total == 0 or pps <= 0:
        sys.exit('bpf-lines.py: no samples or no replies')
    for (func, num, text), n in cost.most_common(top):
        share = n / total
        print(f'{share * 1e9 / pps:8.1f} ns {100 * share:5.2f} %  {func} {num}  {text[:100]}')


if __name__ == '__main__':
    main()
