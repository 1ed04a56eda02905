// SPDX-License-Identifier: MIT
#include "xdp_attach.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "errors.h"
#include "heimdall.h"

namespace heimdall {

int IfIndex(Napi::Env env, const std::string &ifname) {
  unsigned idx = if_nametoindex(ifname.c_str());
  if (idx == 0) ThrowErrno(env, ENODEV, "if_nametoindex", "interface '" + ifname + "' not found");
  return static_cast<int>(idx);
}

AttachedInfo QueryXdp(Napi::Env env, int ifindex) {
  AttachedInfo out;
  LIBBPF_OPTS(bpf_xdp_query_opts, q);
  int err = bpf_xdp_query(ifindex, 0, &q);
  if (err) ThrowErrno(env, err, "bpf_xdp_query", "cannot query XDP on ifindex " + std::to_string(ifindex));
  if (q.drv_prog_id) {
    out.prog_id = q.drv_prog_id;
    out.mode_flags = XDP_FLAGS_DRV_MODE;
  } else if (q.skb_prog_id) {
    out.prog_id = q.skb_prog_id;
    out.mode_flags = XDP_FLAGS_SKB_MODE;
  } else if (q.hw_prog_id) {
    out.prog_id = q.hw_prog_id;
    out.mode_flags = XDP_FLAGS_HW_MODE;
  }
  if (out.prog_id) {
    int fd = bpf_prog_get_fd_by_id(out.prog_id);
    if (fd >= 0) {
      bpf_prog_info info = {};
      uint32_t len = sizeof(info);
      if (bpf_obj_get_info_by_fd(fd, &info, &len) == 0) out.name = info.name;
      close(fd);
    }
  }
  return out;
}

AttachResult AttachXdp(Napi::Env env, const std::string &ifname, int prog_fd, uint32_t prog_id, const std::string &mode, bool force) {
  AttachResult r;
  r.ifindex = IfIndex(env, ifname);
  AttachedInfo cur = QueryXdp(env, r.ifindex);
  if (cur.prog_id && cur.prog_id != prog_id) {
    bool ours = cur.name == HEIMDALL_PROG_NAME;
    if (!ours && !force)
      ThrowErrno(env, EEXIST, "bpf_xdp_query",
                 "interface '" + ifname + "' already runs XDP program '" + cur.name + "' (id " + std::to_string(cur.prog_id) +
                     "); remove it with 'ip link set dev " + ifname + " xdp off' or use --force");
    // A stale heimdall program (its process died) or a forced replacement: remove it so
    // the new one can be attached in whatever mode was asked for.
    int err = bpf_xdp_detach(r.ifindex, cur.mode_flags, nullptr);
    if (err) ThrowErrno(env, err, "bpf_xdp_detach", "cannot remove the XDP program already on '" + ifname + "'");
    r.replaced_id = cur.prog_id;
    r.replaced_name = cur.name;
  } else if (cur.prog_id == prog_id) {
    r.mode_flags = cur.mode_flags;
    return r;
  }

  uint32_t tries[2];
  int ntries = 0;
  if (mode == "native") {
    tries[ntries++] = XDP_FLAGS_DRV_MODE;
  } else if (mode == "generic") {
    tries[ntries++] = XDP_FLAGS_SKB_MODE;
  } else if (mode == "auto") {
    tries[ntries++] = XDP_FLAGS_DRV_MODE;
    tries[ntries++] = XDP_FLAGS_SKB_MODE;
  } else {
    throw Napi::RangeError::New(env, "mode must be native, generic or auto");
  }
  int err = 0;
  for (int i = 0; i < ntries; i++) {
    err = bpf_xdp_attach(r.ifindex, prog_fd, tries[i] | XDP_FLAGS_UPDATE_IF_NOEXIST, nullptr);
    if (err == 0) {
      r.mode_flags = tries[i];
      return r;
    }
  }
  std::string hint = mode == "native" ? "; the driver may lack native XDP, try --mode generic" : "";
  ThrowErrno(env, err, "bpf_xdp_attach", "cannot attach XDP to '" + ifname + "'" + hint);
}

bool DetachXdp(Napi::Env env, int ifindex, uint32_t mode_flags, int expected_fd) {
  LIBBPF_OPTS(bpf_xdp_attach_opts, opts, .old_prog_fd = expected_fd);
  int err = bpf_xdp_detach(ifindex, mode_flags | XDP_FLAGS_REPLACE, &opts);
  if (err == -EEXIST || err == -ENODEV) return false;  // replaced by someone else, or interface gone
  if (err) ThrowErrno(env, err, "bpf_xdp_detach", "cannot detach XDP from ifindex " + std::to_string(ifindex));
  return true;
}

// xdpStatus(ifname) -> { ifindex, progId, name, mode } (progId 0 when nothing is attached)
Napi::Value XdpStatusJs(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) throw Napi::TypeError::New(env, "interface name must be a string");
  std::string ifname = info[0].As<Napi::String>();
  int ifindex = IfIndex(env, ifname);
  AttachedInfo cur = QueryXdp(env, ifindex);
  Napi::Object o = Napi::Object::New(env);
  o.Set("ifindex", ifindex);
  o.Set("progId", cur.prog_id);
  o.Set("name", cur.name);
  o.Set("mode", cur.mode_flags == XDP_FLAGS_SKB_MODE ? "generic" : cur.mode_flags == XDP_FLAGS_HW_MODE ? "hw" : cur.prog_id ? "native" : "none");
  return o;
}

// detachStale(ifname) -> boolean: removes a heimdall program left behind by a process that
// died; never touches a foreign program.
Napi::Value DetachStaleJs(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) throw Napi::TypeError::New(env, "interface name must be a string");
  std::string ifname = info[0].As<Napi::String>();
  int ifindex = IfIndex(env, ifname);
  AttachedInfo cur = QueryXdp(env, ifindex);
  if (!cur.prog_id || cur.name != HEIMDALL_PROG_NAME) return Napi::Boolean::New(env, false);
  int fd = bpf_prog_get_fd_by_id(cur.prog_id);
  if (fd < 0) ThrowErrno(env, errno, "bpf_prog_get_fd_by_id", "cannot open the attached program");
  bool removed = false;
  try {
    removed = DetachXdp(env, ifindex, cur.mode_flags, fd);
  } catch (...) {
    close(fd);
    throw;
  }
  close(fd);
  return Napi::Boolean::New(env, removed);
}

}  // namespace heimdall
