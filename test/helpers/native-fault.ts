/**
 * A kernel failure on demand: FastPath's hot-map delete made to throw the error the addon
 * throws for a failed bpf() call (an Error with errno, code and syscall: isNativeError), for
 * the paths only a real kernel failure reaches. The addon's methods are read-only on its
 * prototype, so the failing one shadows it on the instance; the returned function restores it.
 */
import type { FastPath } from '../../src/xdp/fastpath.js';

export function failHotDelete(fp: FastPath): () => void {
  const native = (fp as unknown as { native: object }).native;
  Object.defineProperty(native, 'hotDelete', {
    configurable: true,
    value: () => {
      throw Object.assign(new Error('bpf_map_delete_elem: Cannot allocate memory'), { errno: 12, code: 'ENOMEM', syscall: 'bpf_map_delete_elem' });
    },
  });
  return () => {
    delete (native as { hotDelete?: unknown }).hotDelete;
  };
}
