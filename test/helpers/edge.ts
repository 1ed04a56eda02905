/**
 * The edge policy the XDP test fixtures run under: the lab prefixes allowed (the default
 * access list refuses them, as it refuses every public address) and the fixtures' server
 * addresses served. Rate limiting stays as FastPath opens it: off, unless a test turns it on.
 */
import { AccessList, parseAclList } from '../../src/edge/acl.js';
import { parseAddr } from '../../src/net/addr.js';
import type { FastPath } from '../../src/xdp/fastpath.js';
import { SERVER4, SERVER6 } from './frames.js';

export const LAB_ALLOW = '198.18.0.0/15,fd00::/8';

/** Opens fp to the lab clients, answering for `servers` (default: the fixtures' server addresses). */
export function serveLab(fp: FastPath, servers: string[] = [SERVER4, SERVER6], allow = LAB_ALLOW, deny = ''): FastPath {
  fp.setAccessList(AccessList.build(parseAclList(allow), parseAclList(deny)));
  fp.setLocalAddresses(servers.map((s) => parseAddr(s)!));
  return fp;
}
