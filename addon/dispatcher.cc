// SPDX-License-Identifier: MIT
#include "dispatcher.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/if_link.h>
#include <linux/magic.h>
#include <pthread.h>
#include <signal.h>
#include <sys/vfs.h>
#include <unistd.h>
#include <xdp/libxdp.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>

#include "program.h"

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

// Loads the object's first program as XDP, then again as its extension, and attaches
// the extension: what libxdp does to a program behind its dispatcher. 0, or the -errno
// the kernel gave; 1 when the probe itself could not be set up (the object is missing).
int ProbeExtension(const std::string &path) {
  if (access(path.c_str(), R_OK) != 0) return 1;
  BpfObjectPtr target(bpf_object__open_file(path.c_str(), nullptr));
  BpfObjectPtr ext(bpf_object__open_file(path.c_str(), nullptr));
  if (!target || !ext) return 1;
  bpf_program *tp = bpf_object__next_program(target.get(), nullptr);
  bpf_program *ep = bpf_object__next_program(ext.get(), nullptr);
  if (!tp || !ep) return 1;
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old);
  int err = bpf_object__load(target.get());
  if (err) {
    err = 1;
  } else {
    bpf_program__set_type(ep, BPF_PROG_TYPE_EXT);
    bpf_program__set_expected_attach_type(ep, static_cast<bpf_attach_type>(0));
    err = bpf_program__set_attach_target(ep, bpf_program__fd(tp), bpf_program__name(tp));
    if (!err) err = bpf_object__load(ext.get());
    if (!err) {
      int link = bpf_raw_tracepoint_open(nullptr, bpf_program__fd(ep));
      if (link < 0) err = -errno;
      else close(link);
    }
  }
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  return err;
}

}  // namespace

std::string DispatcherUnavailable(const std::string &probe_object) {
  const char *env = secure_getenv("LIBXDP_BPFFS");
  const char *dir = env && *env ? env : "/sys/fs/bpf";
  struct statfs st;
  if (statfs(dir, &st) != 0 || static_cast<unsigned long>(st.f_type) != BPF_FS_MAGIC)
    return std::string("no bpffs at ") + dir + " for libxdp's state" +
           (env ? "" : " (mount one there, or name one with LIBXDP_BPFFS; 'ip netns exec' hides the host's)");
  // libxdp keeps its state (and its lock) in <bpffs>/xdp, made on first use, mode 0700.
  std::string state = std::string(dir) + "/xdp";
  const std::string &check = access(state.c_str(), F_OK) == 0 ? state : std::string(dir);
  if (access(check.c_str(), W_OK | X_OK) != 0) {
    int e = errno;
    return "libxdp's state in " + check + " is not writable here (" + strerrorname_np(e) +
           "): run as root, or give this user a bpffs of its own with LIBXDP_BPFFS";
  }
  // Told to do without (libxdp's own switch): libxdp attaches alone, nothing to ask.
  const char *skip = secure_getenv("LIBXDP_SKIP_DISPATCHER");
  if (skip && std::string(skip) == "1") return "";
  static std::once_flag once;
  static int probed = 0;
  std::call_once(once, [&] { probed = ProbeExtension(probe_object); });
  if (probed < 0)
    return std::string("the kernel refuses the extension (freplace) programs a libxdp dispatcher runs (") + strerrorname_np(-probed) + ")";
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
