// SPDX-License-Identifier: MIT
// xdp_attach.h: attaching and detaching XDP programs on an interface, by name, with the
// rules an operator expects: through libxdp's dispatcher when it can (so other XDP
// programs keep running beside heimdall), directly otherwise; a stale heimdall program is
// replaced, a foreign one is refused unless forced.
#pragma once

#include <napi.h>

#include <cstdint>
#include <functional>
#include <string>

#include "dispatcher.h"

namespace heimdall {

struct AttachResult {
  int ifindex = 0;
  uint32_t mode_flags = 0;  // XDP_FLAGS_DRV_MODE or XDP_FLAGS_SKB_MODE
  uint32_t replaced_id = 0;
  std::string replaced_name;
  // Through a dispatcher: the id of heimdall's program in it (not the plain one), the
  // dispatcher's id, and heimdall's place in its run order (1-based).
  bool dispatcher = false;
  uint32_t attached_id = 0;
  uint32_t dispatcher_id = 0;
  uint32_t position = 0;
  uint32_t count = 0;
  // Attached directly: why not through a dispatcher ("" when asked for direct).
  std::string direct_reason;
  // libxdp attached the second load alone (told to, or the kernel could not do better):
  // it is kept, attached_id is its id.
  bool second_load = false;
};

struct AttachedInfo {
  uint32_t prog_id = 0;
  uint32_t mode_flags = 0;
  std::string name;
};

// Attaches heimdall's program through a dispatcher in one XDP mode: 0 and the id of the
// program attached there, or -errno.
using DispatcherAttachFn = std::function<int(int ifindex, uint32_t mode_flags, uint32_t *attached_id)>;

int IfIndex(Napi::Env env, const std::string &ifname);
AttachedInfo QueryXdp(Napi::Env env, int ifindex);
// how: "auto" (dispatcher, else direct), "dispatcher" or "direct".
AttachResult AttachXdp(Napi::Env env, const std::string &ifname, int prog_fd, uint32_t prog_id, const std::string &mode, bool force,
                       const std::string &how, const DispatcherAttachFn &via_dispatcher, const std::string &probe_object);
bool DetachXdp(Napi::Env env, int ifindex, uint32_t mode_flags, int expected_fd);

// Module functions: xdpStatus(ifname), detachStale(ifname), dispatcherUnavailable(probeObject).
Napi::Value XdpStatusJs(const Napi::CallbackInfo &info);
Napi::Value DispatcherUnavailableJs(const Napi::CallbackInfo &info);
Napi::Value DetachStaleJs(const Napi::CallbackInfo &info);

}  // namespace heimdall
