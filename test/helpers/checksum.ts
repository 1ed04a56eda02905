/**
 * Internet checksums computed the plain way (RFC 1071 / 768 / 8200), independently of
 * the program under test, to verify the frames it writes.
 */

export function onesComplementSum(bytes: Uint8Array, initial = 0): number {
  let sum = initial;
  for (let i = 0; i < bytes.length; i += 2) {
    const hi = bytes[i]!;
    const lo = i + 1 < bytes.length ? bytes[i + 1]! : 0;
    sum += (hi << 8) | lo;
  }
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum;
}

export function ipv4HeaderChecksum(header: Uint8Array): number {
  const copy = Uint8Array.from(header);
  copy[10] = 0;
  copy[11] = 0;
  return ~onesComplementSum(copy) & 0xffff;
}

/** The UDP checksum of a segment (its checksum field taken as zero). */
export function udpChecksum(src: Uint8Array, dst: Uint8Array, segment: Uint8Array): number {
  const seg = Uint8Array.from(segment);
  seg[6] = 0;
  seg[7] = 0;
  const pseudo = new Uint8Array(src.length + dst.length + (src.length === 4 ? 4 : 8));
  pseudo.set(src, 0);
  pseudo.set(dst, src.length);
  const p = src.length + dst.length;
  if (src.length === 4) {
    pseudo[p + 1] = 17;
    pseudo[p + 2] = segment.length >> 8;
    pseudo[p + 3] = segment.length & 0xff;
  } else {
    pseudo[p + 2] = segment.length >> 8;
    pseudo[p + 3] = segment.length & 0xff;
    pseudo[p + 7] = 17;
  }
  const c = ~onesComplementSum(seg, onesComplementSum(pseudo)) & 0xffff;
  return c === 0 ? 0xffff : c;
}

/** What a NIC with checksum offload expects in the field: the folded pseudo-header sum. */
export function udpPartialChecksum(src: Uint8Array, dst: Uint8Array, udpLength: number): number {
  const pseudo = new Uint8Array(src.length * 2 + 4);
  pseudo.set(src, 0);
  pseudo.set(dst, src.length);
  const p = src.length * 2;
  pseudo[p + 1] = 17;
  pseudo[p + 2] = udpLength >> 8;
  pseudo[p + 3] = udpLength & 0xff;
  return onesComplementSum(pseudo);
}
