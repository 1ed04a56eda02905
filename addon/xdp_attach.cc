// SPDX-License-Identifier: MIT
#include "xdp_attach.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

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

namespace {

std::vector<uint32_t> ModeTries(Napi::Env env, const std::string &mode) {
  if (mode == "native") return {XDP_FLAGS_DRV_MODE};
  if (mode == "generic") return {XDP_FLAGS_SKB_MODE};
  if (mode == "auto") return {XDP_FLAGS_DRV_MODE, XDP_FLAGS_SKB_MODE};
  throw Napi::RangeError::New(env, "mode must be native, generic or auto");
}

const char *ModeName(uint32_t flags) { return flags == XDP_FLAGS_SKB_MODE ? "generic" : "native"; }

std::string Members(const DispatcherInfo &d) {
  std::string out;
  for (const auto &m : d.programs) out += (out.empty() ? "'" : ", '") + m.name + "' (id " + std::to_string(m.id) + ")";
  return out;
}

// The last line libbpf or libxdp logged, for a reason in one line.
std::string LastLogLine() {
  std::string log = LibbpfLog();
  while (!log.empty() && (log.back() == '\n' || log.back() == ' ')) log.pop_back();
  size_t nl = log.rfind('\n');
  return nl == std::string::npos ? log : log.substr(nl + 1);
}

// Removes a program attached directly (not through a dispatcher), only if it is still `id`.
int DetachDirect(int ifindex, uint32_t mode_flags, uint32_t id) {
  int fd = bpf_prog_get_fd_by_id(id);
  if (fd < 0) return -errno;
  LIBBPF_OPTS(bpf_xdp_attach_opts, opts, .old_prog_fd = fd);
  int err = bpf_xdp_detach(ifindex, mode_flags | XDP_FLAGS_REPLACE, &opts);
  close(fd);
  return err;
}

}  // namespace

AttachResult AttachXdp(Napi::Env env, const std::string &ifname, int prog_fd, uint32_t prog_id, const std::string &mode, bool force,
                       const std::string &how, const DispatcherAttachFn &via_dispatcher, const std::string &probe_object) {
  AttachResult r;
  r.ifindex = IfIndex(env, ifname);
  std::vector<uint32_t> tries = ModeTries(env, mode);
  if (how != "auto" && how != "dispatcher" && how != "direct") throw Napi::RangeError::New(env, "attach must be auto, dispatcher or direct");

  // What runs there now. A heimdall program is one a process that died left behind (a
  // live instance refused this one before it got here: src/edge/owner.ts), or one --force
  // takes over: it is removed wherever it runs, and a dispatcher keeps its other programs.
  DispatcherInfo disp;
  bool has_disp = ReadDispatcher(r.ifindex, &disp);
  if (has_disp) {
    for (const auto &m : disp.programs) {
      if (m.name != HEIMDALL_PROG_NAME) continue;
      int err = DispatcherRemove(r.ifindex, m.id);
      if (err && err != -ENOENT) ThrowErrno(env, err, "xdp_program__detach", "cannot remove the heimdall program left in the libxdp dispatcher on '" + ifname + "'");
      r.replaced_id = m.id;
      r.replaced_name = m.name;
    }
    has_disp = ReadDispatcher(r.ifindex, &disp);
  }
  AttachedInfo cur = QueryXdp(env, r.ifindex);
  if (!has_disp && cur.prog_id) {
    if (cur.prog_id == prog_id) {
      r.mode_flags = cur.mode_flags;
      return r;
    }
    bool ours = cur.name == HEIMDALL_PROG_NAME;
    if (!ours && !force) {
      std::string why;
      if (cur.name == "xdp_dispatcher") {
        why = " (a libxdp dispatcher whose programs cannot be read here: " + DispatcherUnavailable(probe_object) + ")";
      } else if (how != "direct") {
        std::string unavailable = DispatcherUnavailable(probe_object);
        why = unavailable.empty() ? ", not through a libxdp dispatcher (load it with xdp-loader to share the interface)"
                                  : " (no libxdp dispatcher can share the interface here: " + unavailable + ")";
      }
      ThrowErrno(env, EEXIST, "bpf_xdp_query",
                 "interface '" + ifname + "' already runs XDP program '" + cur.name + "' (id " + std::to_string(cur.prog_id) + ")" + why +
                     "; remove it with 'ip link set dev " + ifname + " xdp off' or use --force");
    }
    // A stale heimdall program or a forced replacement: removed, so the new one can be
    // attached in whatever mode was asked for.
    int err = bpf_xdp_detach(r.ifindex, cur.mode_flags, nullptr);
    if (err) ThrowErrno(env, err, "bpf_xdp_detach", "cannot remove the XDP program already on '" + ifname + "'");
    r.replaced_id = cur.prog_id;
    r.replaced_name = cur.name;
  }

  int err = 0;
  if (how != "direct") {
    std::string unavailable = DispatcherUnavailable(probe_object);
    if (!unavailable.empty()) {
      if (how == "dispatcher")
        ThrowErrno(env, EOPNOTSUPP, "xdp_program__attach", "cannot attach to '" + ifname + "' through a libxdp dispatcher (" + unavailable + "); attach with --xdp-attach direct or auto");
      r.direct_reason = unavailable;
    } else {
      std::vector<uint32_t> modes = tries;
      if (has_disp) {
        // Joining a dispatcher means its mode: one interface runs native or generic XDP, not both.
        if (std::find(tries.begin(), tries.end(), disp.mode_flags) == tries.end())
          ThrowErrno(env, EEXIST, "xdp_program__attach",
                     "the libxdp dispatcher on '" + ifname + "' runs in " + ModeName(disp.mode_flags) + " mode; attach with --mode " + ModeName(disp.mode_flags) + " or auto");
        modes = {disp.mode_flags};
      }
      for (uint32_t m : modes) {
        uint32_t id = 0;
        err = via_dispatcher(r.ifindex, m, &id);
        if (err) continue;
        DispatcherInfo now;
        if (ReadDispatcher(r.ifindex, &now)) {
          for (size_t i = 0; i < now.programs.size(); i++) {
            if (now.programs[i].id != id) continue;
            r.mode_flags = m;
            r.dispatcher = true;
            r.attached_id = id;
            r.dispatcher_id = now.id;
            r.position = static_cast<uint32_t>(i + 1);
            r.count = static_cast<uint32_t>(now.programs.size());
            return r;
          }
        }
        // libxdp attached the program alone, without a dispatcher: it does when told to
        // (LIBXDP_SKIP_DISPATCHER=1) or when the kernel cannot run a program behind one.
        // That is a direct attach of the same program over the same maps: kept.
        AttachedInfo a = QueryXdp(env, r.ifindex);
        const char *skip = secure_getenv("LIBXDP_SKIP_DISPATCHER");
        r.direct_reason = skip && std::string(skip) == "1" ? "libxdp was told to attach alone (LIBXDP_SKIP_DISPATCHER=1)"
                                                           : "libxdp attached it alone (" + LastLogLine() + ")";
        if (a.prog_id != id) {
          err = -EBUSY;
          break;
        }
        if (how == "dispatcher") {
          DetachDirect(r.ifindex, a.mode_flags, id);
          err = -EOPNOTSUPP;
          break;
        }
        r.mode_flags = a.mode_flags;
        r.attached_id = id;
        r.second_load = true;
        return r;
      }
      if (r.direct_reason.empty()) {
        // Kernels from 6.13 (and 6.12 stable updates) refuse an extension that changes
        // packet data (heimdall grows replies) in place of a function that does not;
        // libxdp's dispatcher stubs do since 1.5.5, older ones cannot take heimdall.
        if (LibbpfLog().find("changes packet data") != std::string::npos)
          r.direct_reason = "the kernel refuses heimdall (it resizes packets) behind this libxdp's dispatcher: libxdp 1.5.5 or later is needed";
        else
          r.direct_reason = std::string("libxdp could not attach through a dispatcher: ") + strerror(-err) + " (" + LastLogLine() + ")";
      }
      if (how == "dispatcher" || has_disp)
        ThrowErrno(env, err, "xdp_program__attach", "cannot attach to '" + ifname + "' through a libxdp dispatcher (" + r.direct_reason + ")");
    }
  }

  if (has_disp) {
    // Asked for a direct attach, and other programs run there through a dispatcher.
    if (!force)
      ThrowErrno(env, EEXIST, "xdp_multiprog__get_from_ifindex",
                 "interface '" + ifname + "' runs XDP programs " + Members(disp) + " through a libxdp dispatcher; join them with --xdp-attach auto or dispatcher, or replace them all with --force");
    err = DispatcherRemoveAll(r.ifindex);
    if (err) ThrowErrno(env, err, "xdp_multiprog__detach", "cannot remove the libxdp dispatcher on '" + ifname + "'");
    r.replaced_id = disp.id;
    r.replaced_name = "xdp_dispatcher";
  }
  for (uint32_t m : tries) {
    err = bpf_xdp_attach(r.ifindex, prog_fd, m | XDP_FLAGS_UPDATE_IF_NOEXIST, nullptr);
    if (err == 0) {
      r.mode_flags = m;
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

// xdpStatus(ifname) -> { ifindex, progId, name, mode, dispatcher } (progId 0 when nothing
// is attached; dispatcher null unless a libxdp dispatcher runs there, else its id and
// its programs in run order: [{ id, name, priority }])
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
  DispatcherInfo d;
  if (cur.prog_id && ReadDispatcher(ifindex, &d)) {
    Napi::Object disp = Napi::Object::New(env);
    disp.Set("id", d.id);
    Napi::Array progs = Napi::Array::New(env, d.programs.size());
    for (size_t i = 0; i < d.programs.size(); i++) {
      Napi::Object p = Napi::Object::New(env);
      p.Set("id", d.programs[i].id);
      p.Set("name", d.programs[i].name);
      p.Set("priority", d.programs[i].priority);
      progs.Set(static_cast<uint32_t>(i), p);
    }
    disp.Set("programs", progs);
    o.Set("dispatcher", disp);
  } else {
    o.Set("dispatcher", env.Null());
  }
  return o;
}

// dispatcherUnavailable(probeObject) -> why this process cannot attach through a libxdp
// dispatcher, or '' when it can (DispatcherUnavailable in dispatcher.h).
Napi::Value DispatcherUnavailableJs(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) throw Napi::TypeError::New(env, "probe object path must be a string");
  return Napi::String::New(env, DispatcherUnavailable(info[0].As<Napi::String>()));
}

// detachStale(ifname) -> boolean: removes a heimdall program left behind by a process that
// died, attached directly or through a dispatcher (whose other programs keep running);
// never touches a foreign program.
Napi::Value DetachStaleJs(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) throw Napi::TypeError::New(env, "interface name must be a string");
  std::string ifname = info[0].As<Napi::String>();
  int ifindex = IfIndex(env, ifname);
  DispatcherInfo d;
  if (ReadDispatcher(ifindex, &d)) {
    bool removed = false;
    for (const auto &m : d.programs) {
      if (m.name != HEIMDALL_PROG_NAME) continue;
      int err = DispatcherRemove(ifindex, m.id);
      if (err == -ENOENT) continue;
      if (err) ThrowErrno(env, err, "xdp_program__detach", "cannot remove the heimdall program from the libxdp dispatcher on '" + ifname + "'");
      removed = true;
    }
    return Napi::Boolean::New(env, removed);
  }
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
