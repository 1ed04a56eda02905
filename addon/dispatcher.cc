// SPDX-License-Identifier: MIT
#include "dispatcher.h"

#include <linux/if_link.h>
#include <linux/magic.h>
#include <sys/vfs.h>
#include <xdp/libxdp.h>

#include <cerrno>
#include <cstdlib>
#include <memory>

namespace heimdall {

namespace {

// Closes an xdp_multiprog (and the xdp_program handles it holds).
struct MultiprogClose {
  void operator()(xdp_multiprog *mp) const noexcept { xdp_multiprog__close(mp); }
};
using MultiprogPtr = std::unique_ptr<xdp_multiprog, MultiprogClose>;

// The dispatcher on ifindex, or null (nothing there, a plain program, or state not visible).
MultiprogPtr Open(int ifindex) {
  xdp_multiprog *mp = xdp_multiprog__get_from_ifindex(ifindex);
  if (!mp || libxdp_get_error(mp)) return nullptr;
  MultiprogPtr p(mp);
  if (xdp_multiprog__is_legacy(mp)) return nullptr;
  return p;
}

}  // namespace

std::string DispatcherUnavailable() {
  const char *env = secure_getenv("LIBXDP_BPFFS");
  const char *dir = env && *env ? env : "/sys/fs/bpf";
  struct statfs st;
  if (statfs(dir, &st) != 0 || static_cast<unsigned long>(st.f_type) != BPF_FS_MAGIC)
    return std::string("no bpffs at ") + dir + " for libxdp's state" +
           (env ? "" : " (mount one there, or name one with LIBXDP_BPFFS; 'ip netns exec' hides the host's)");
  return "";
}

bool ReadDispatcher(int ifindex, DispatcherInfo *out) {
  MultiprogPtr mp = Open(ifindex);
  if (!mp) return false;
  out->id = xdp_program__id(xdp_multiprog__main_prog(mp.get()));
  out->mode_flags = xdp_multiprog__attach_mode(mp.get()) == XDP_MODE_SKB ? XDP_FLAGS_SKB_MODE : XDP_FLAGS_DRV_MODE;
  out->programs.clear();
  for (xdp_program *p = xdp_multiprog__next_prog(nullptr, mp.get()); p; p = xdp_multiprog__next_prog(p, mp.get())) {
    DispatcherMember m;
    m.id = xdp_program__id(p);
    m.name = xdp_program__name(p);
    m.priority = xdp_program__run_prio(p);
    out->programs.push_back(m);
  }
  return true;
}

int DispatcherRemove(int ifindex, uint32_t prog_id) {
  MultiprogPtr mp = Open(ifindex);
  if (!mp) return -ENOENT;
  for (xdp_program *p = xdp_multiprog__next_prog(nullptr, mp.get()); p; p = xdp_multiprog__next_prog(p, mp.get())) {
    if (xdp_program__id(p) != prog_id) continue;
    // libxdp reads the dispatcher again and swaps in one without this program
    // (XDP_FLAGS_REPLACE against the one it read: a concurrent change makes it retry).
    return xdp_program__detach(p, ifindex, XDP_MODE_UNSPEC, 0);
  }
  return -ENOENT;
}

int DispatcherRemoveAll(int ifindex) {
  MultiprogPtr mp = Open(ifindex);
  if (!mp) return -ENOENT;
  return xdp_multiprog__detach(mp.get());
}

}  // namespace heimdall
