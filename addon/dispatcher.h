// SPDX-License-Identifier: MIT
// dispatcher.h: libxdp's multi-program dispatcher on an interface, as heimdall sees it:
// which programs run behind it and in what order, whether this process can use it, and
// removing one program from it while the others keep running.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

struct xdp_program;

namespace heimdall {

// Run priority of heimdall's program in a dispatcher: programs run in increasing order,
// so anything loaded with libxdp's default (50, xdp-loader's too) runs before heimdall.
#define HEIMDALL_RUN_PRIO 100

struct DispatcherMember {
  uint32_t id = 0;
  std::string name;
  uint32_t priority = 0;
};

struct DispatcherInfo {
  uint32_t id = 0;         // the dispatcher program's id
  uint32_t mode_flags = 0;  // XDP_FLAGS_DRV_MODE or XDP_FLAGS_SKB_MODE
  std::vector<DispatcherMember> programs;  // in run order
};

// Why this process cannot attach through a dispatcher ("" when it can): libxdp keeps a
// dispatcher's programs pinned in bpffs, and without one it cannot share an interface;
// and the programs behind a dispatcher are extensions (BPF_PROG_TYPE_EXT, freplace),
// which a kernel may refuse. `probe_object` is a small BPF object with BTF whose first
// program is loaded once as XDP and once as its extension, to ask the kernel (once per
// process; skipped when the file cannot be read, leaving the question to libxdp).
std::string DispatcherUnavailable(const std::string &probe_object);

// Reads the dispatcher on ifindex; false when there is none (nothing attached, or a
// program attached directly, or a dispatcher whose bpffs state this process cannot see).
bool ReadDispatcher(int ifindex, DispatcherInfo *out);

// Removes the program with this id from the dispatcher on ifindex, leaving the others
// running (libxdp rebuilds the dispatcher without it; the last one takes the dispatcher
// with it). 0, -ENOENT when it is not there, or -errno.
int DispatcherRemove(int ifindex, uint32_t prog_id);

// Removes the whole dispatcher (every program in it). 0 or -errno.
int DispatcherRemoveAll(int ifindex);

}  // namespace heimdall
