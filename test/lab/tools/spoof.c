/*
 * spoof.c: a spoofed DNS query flood for the lab tests (built by the test with the
 * machine's C++ compiler; valid C and C++). Sends one IPv4 UDP query for <qname> A from
 * <src>:<sport> (any source address: a raw socket with our own IP header) to <dst>:53,
 * at about <rate> per second for <seconds>, in batches of sendmmsg. Prints the number
 * sent. Runs only inside a test namespace.
 *
 *   spoof <src> <sport> <dst> <qname> <rate> <seconds>
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/udp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64

static uint16_t csum(const void *p, size_t n, uint32_t sum)
{
	const uint8_t *b = (const uint8_t *)p;
	for (size_t i = 0; i + 1 < n; i += 2) sum += (uint32_t)(b[i] << 8 | b[i + 1]);
	if (n & 1) sum += (uint32_t)(b[n - 1] << 8);
	while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	if (argc != 7) {
		fprintf(stderr, "usage: spoof <src> <sport> <dst> <qname> <rate> <seconds>\n");
		return 2;
	}
	uint8_t pkt[512];
	memset(pkt, 0, sizeof pkt);
	struct iphdr *ip = (struct iphdr *)pkt;
	struct udphdr *udp = (struct udphdr *)(pkt + 20);
	uint8_t *dns = pkt + 28;
	size_t n = 12;
	dns[0] = 0x12; dns[1] = 0x34; dns[2] = 0x01; dns[5] = 1; /* RD, one question */
	const char *q = argv[4];
	while (*q) {
		const char *dot = strchr(q, '.');
		size_t len = dot ? (size_t)(dot - q) : strlen(q);
		if (len == 0 || len > 63 || n + len + 6 > 400) return 2;
		dns[n++] = (uint8_t)len;
		memcpy(dns + n, q, len);
		n += len;
		q += len + (dot ? 1 : 0);
	}
	dns[n++] = 0;
	dns[n++] = 0; dns[n++] = 1; /* A */
	dns[n++] = 0; dns[n++] = 1; /* IN */
	size_t total = 28 + n;
	ip->version = 4; ip->ihl = 5; ip->ttl = 64; ip->protocol = IPPROTO_UDP;
	ip->tot_len = htons((uint16_t)total);
	if (inet_pton(AF_INET, argv[1], &ip->saddr) != 1 || inet_pton(AF_INET, argv[3], &ip->daddr) != 1) return 2;
	ip->check = htons(csum(ip, 20, 0));
	udp->source = htons((uint16_t)atoi(argv[2]));
	udp->dest = htons(53);
	udp->len = htons((uint16_t)(8 + n));
	uint8_t pseudo[12];
	memcpy(pseudo, &ip->saddr, 4); memcpy(pseudo + 4, &ip->daddr, 4);
	pseudo[8] = 0; pseudo[9] = IPPROTO_UDP; pseudo[10] = (uint8_t)((8 + n) >> 8); pseudo[11] = (uint8_t)(8 + n);
	uint32_t s = 0;
	for (int i = 0; i < 12; i += 2) s += (uint32_t)(pseudo[i] << 8 | pseudo[i + 1]);
	uint16_t c = csum(udp, 8 + n, s);
	udp->check = htons(c ? c : 0xffff);

	int fd = socket(AF_INET, SOCK_RAW, IPPROTO_RAW);
	if (fd < 0) { perror("socket"); return 1; }
	struct sockaddr_in to;
	memset(&to, 0, sizeof to);
	to.sin_family = AF_INET;
	to.sin_addr.s_addr = ip->daddr;
	struct iovec iov[BATCH];
	struct mmsghdr msgs[BATCH];
	memset(msgs, 0, sizeof msgs);
	for (int i = 0; i < BATCH; i++) {
		iov[i].iov_base = pkt; iov[i].iov_len = total;
		msgs[i].msg_hdr.msg_iov = &iov[i]; msgs[i].msg_hdr.msg_iovlen = 1;
		msgs[i].msg_hdr.msg_name = &to; msgs[i].msg_hdr.msg_namelen = sizeof to;
	}
	double rate = atof(argv[5]), secs = atof(argv[6]);
	double t0 = now();
	unsigned long sent = 0;
	for (;;) {
		double t = now() - t0;
		if (t >= secs) break;
		if (sent >= rate * t) { usleep(100); continue; }
		int r = sendmmsg(fd, msgs, BATCH, 0);
		if (r > 0) sent += (unsigned long)r;
	}
	printf("%lu\n", sent);
	return 0;
}
