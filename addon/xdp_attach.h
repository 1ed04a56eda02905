// SPDX-License-Identifier: MIT
// xdp_attach.h: attaching and detaching XDP programs on an interface, by name, with the
// rules an operator expects: a stale heimdall program is replaced, a foreign one is
// refused unless forced.
#pragma once

#include <napi.h>

#include <cstdint>
#include <string>

namespace heimdall {

struct AttachResult {
  int ifindex = 0;
  uint32_t mode_flags = 0;  // XDP_FLAGS_DRV_MODE or XDP_FLAGS_SKB_MODE
  uint32_t replaced_id = 0;
  std::string replaced_name;
};

struct AttachedInfo {
  uint32_t prog_id = 0;
  uint32_t mode_flags = 0;
  std::string name;
};

int IfIndex(Napi::Env env, const std::string &ifname);
AttachedInfo QueryXdp(Napi::Env env, int ifindex);
AttachResult AttachXdp(Napi::Env env, const std::string &ifname, int prog_fd, uint32_t prog_id, const std::string &mode, bool force);
bool DetachXdp(Napi::Env env, int ifindex, uint32_t mode_flags, int expected_fd);

// Module functions: xdpStatus(ifname) and detachStale(ifname).
Napi::Value XdpStatusJs(const Napi::CallbackInfo &info);
Napi::Value DetachStaleJs(const Napi::CallbackInfo &info);

}  // namespace heimdall
