// SPDX-License-Identifier: MIT
// xsk.cc: AF_XDP sockets (see xsk.h). The TypeScript layer (src/io/xsk.ts) validates
// arguments and keeps the frame accounting; the checks here are the cheap last line
// that keeps a bad descriptor off the rings, where the kernel would drop it silently
// and the frame would never come back.
#include "xsk.h"

#include <bpf/bpf.h>
#include <linux/bpf.h>
#include <linux/if_xdp.h>
#include <net/if.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "args.h"
#include "errors.h"
#include "heimdall.h"
#include "xdp_attach.h"

#ifndef XDP_MAX_TX_SKB_BUDGET
#define XDP_MAX_TX_SKB_BUDGET 9  // Linux 6.17+; the uapi headers of Debian 12 predate it
#endif

namespace heimdall {

// The uv_poll_t lives apart from the socket: libuv owns it until its close callback,
// which can run after the XskSocket is gone (finalizer, cleanup hook).
struct XskSocket::PollHandle {
  uv_poll_t handle;  // first member: libuv hands back &handle
  XskSocket *owner = nullptr;
  napi_async_cleanup_hook_handle finish = nullptr;  // removed once the close completes
};

namespace {

constexpr uint32_t kMinRing = 64;
constexpr uint32_t kMaxRing = 16384;
// UMEM offsets travel in Uint32Arrays and are masked with JS bitwise operators, which
// work on signed 32-bit integers: keeping the UMEM under 1 GiB keeps every offset positive.
constexpr uint64_t kMaxUmem = 1ull << 30;

// UMEM pages are pinned; without CAP_IPC_LOCK they count against RLIMIT_MEMLOCK. Raise
// the soft limit as far as allowed; EPERM (no CAP_SYS_RESOURCE) is not an error: with
// CAP_IPC_LOCK, or with a limit already large enough, the UMEM registers anyway.
void RaiseMemlock() {
  rlimit rl;
  if (getrlimit(RLIMIT_MEMLOCK, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) return;
  rlimit inf = {RLIM_INFINITY, RLIM_INFINITY};
  if (setrlimit(RLIMIT_MEMLOCK, &inf) == 0) return;
  if (rl.rlim_cur < rl.rlim_max) {
    rlimit up = {rl.rlim_max, rl.rlim_max};
    setrlimit(RLIMIT_MEMLOCK, &up);
  }
}

std::string CreateHint(int err, const std::string &ifname, uint32_t queue, const std::string &mode) {
  std::string where = "queue " + std::to_string(queue) + " of '" + ifname + "'";
  switch (err) {
    case EBUSY:
      return "cannot bind an AF_XDP socket to " + where + ": another socket (another worker?) holds it; close that one first";
    case EOPNOTSUPP:
      return "cannot bind an AF_XDP socket to " + where + " in " + mode + " mode: the driver lacks it; use mode 'copy' or 'auto'";
    case EINVAL:
      return "cannot bind an AF_XDP socket to " + where + ": no such queue or bad ring/frame sizes (check 'ethtool -l " + ifname + "')";
    case ENOBUFS:
    case ENOMEM:
      return "cannot register the UMEM for " + where + ": locked memory limit reached; raise 'ulimit -l' or run with CAP_IPC_LOCK";
    default:
      return "cannot create an AF_XDP socket on " + where;
  }
}

}  // namespace

Napi::Function XskSocket::Init(Napi::Env env) {
  return DefineClass(env, "XskSocket",
                     {
                         InstanceMethod("umem", &XskSocket::Umem),
                         InstanceMethod("register", &XskSocket::RegisterJs),
                         InstanceMethod("fill", &XskSocket::Fill),
                         InstanceMethod("rx", &XskSocket::Rx),
                         InstanceMethod("tx", &XskSocket::Tx),
                         InstanceMethod("txWaiting", &XskSocket::TxWaiting),
                         InstanceMethod("complete", &XskSocket::Complete),
                         InstanceMethod("poll", &XskSocket::Poll),
                         InstanceMethod("stopPoll", &XskSocket::StopPoll),
                         InstanceMethod("stats", &XskSocket::Stats),
                         InstanceMethod("describe", &XskSocket::Describe),
                         InstanceMethod("close", &XskSocket::Close),
                         InstanceAccessor("fd", &XskSocket::GetFd, nullptr),
                     });
}

// new XskSocket(ifname, queueId, { frameSize, frameCount, ringSize, mode, needWakeup })
XskSocket::XskSocket(const Napi::CallbackInfo &info) : Napi::ObjectWrap<XskSocket>(info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsString() || !info[2].IsObject())
    throw Napi::TypeError::New(env, "XskSocket(ifname, queueId, options)");
  std::string ifname = info[0].As<Napi::String>();
  if (ifname.empty() || ifname.size() >= IFNAMSIZ) throw Napi::RangeError::New(env, "interface name must be 1..15 characters");
  queue_id_ = ArgUint32(info, 1, "queueId");
  if (queue_id_ >= HEIMDALL_MAX_QUEUES)
    throw Napi::RangeError::New(env, "queueId must be below " + std::to_string(HEIMDALL_MAX_QUEUES));
  Napi::Object o = info[2].As<Napi::Object>();
  frame_size_ = PropUint32(o, "frameSize");
  frame_count_ = PropUint32(o, "frameCount");
  ring_size_ = PropUint32(o, "ringSize");
  if (frame_size_ != 2048 && frame_size_ != 4096) throw Napi::RangeError::New(env, "frameSize must be 2048 or 4096");
  if (ring_size_ < kMinRing || ring_size_ > kMaxRing || (ring_size_ & (ring_size_ - 1)))
    throw Napi::RangeError::New(env, "ringSize must be a power of two, 64..16384");
  if (frame_count_ < 1 || static_cast<uint64_t>(frame_count_) * frame_size_ > kMaxUmem)
    throw Napi::RangeError::New(env, "frameCount must be at least 1 and frameCount * frameSize at most 1 GiB");
  Napi::Value mode_v = o.Get("mode");
  std::string mode = mode_v.IsString() ? mode_v.As<Napi::String>().Utf8Value() : "";
  if (mode != "copy" && mode != "zerocopy" && mode != "auto")
    throw Napi::RangeError::New(env, "options.mode must be 'copy', 'zerocopy' or 'auto'");
  need_wakeup_ = o.Get("needWakeup").ToBoolean();
  ifindex_ = IfIndex(env, ifname);

  area_size_ = static_cast<size_t>(frame_count_) * frame_size_;
  RaiseMemlock();
  void *area = mmap(nullptr, area_size_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (area == MAP_FAILED) ThrowErrno(env, errno, "mmap", "cannot map a UMEM of " + std::to_string(area_size_) + " bytes");
  area_ = area;

  uint16_t wake = need_wakeup_ ? XDP_USE_NEED_WAKEUP : 0;
  const char *call = "xsk_socket__create";
  // auto binds with neither flag: the kernel takes zero-copy where the driver has it and
  // falls back to copy (veth) by itself; XDP_OPTIONS says below which one it took.
  uint16_t how = mode == "copy" ? XDP_COPY : mode == "zerocopy" ? XDP_ZEROCOPY : 0;
  int err = Create(ifname, static_cast<uint16_t>(how | wake), &call);
  if (err) {
    ReleaseNative(nullptr);
    ThrowErrno(env, err, call, CreateHint(-err, ifname, queue_id_, mode));
  }
  fd_ = xsk_socket__fd(xsk_);

  xdp_options opts = {};
  socklen_t optlen = sizeof(opts);
  if (getsockopt(fd_, SOL_XDP, XDP_OPTIONS, &opts, &optlen) == 0) zerocopy_ = (opts.flags & XDP_OPTIONS_ZEROCOPY) != 0;
  // Copy mode sends at most 32 frames per sendto() unless told otherwise (6.17+).
  uint32_t budget = ring_size_;
  if (setsockopt(fd_, SOL_XDP, XDP_MAX_TX_SKB_BUDGET, &budget, sizeof(budget)) == 0) tx_budget_ = budget;

  try {
    umem_ab_ = Napi::Persistent(Napi::ArrayBuffer::New(env, area_, area_size_));
    if (napi_add_async_cleanup_hook(env, AsyncCleanup, this, &cleanup_) != napi_ok) {
      cleanup_ = nullptr;
      ThrowErrno(env, ENOMEM, "napi_add_async_cleanup_hook", "cannot register the socket's cleanup hook");
    }
  } catch (...) {
    if (!umem_ab_.IsEmpty()) {
      umem_ab_.Value().Detach();
      umem_ab_.Reset();
    }
    ReleaseNative(nullptr);
    throw;
  }
}

int XskSocket::Create(const std::string &ifname, uint16_t bind_flags, const char **call) {
  xsk_umem_config ucfg = {};
  ucfg.fill_size = ring_size_;
  ucfg.comp_size = ring_size_;
  ucfg.frame_size = frame_size_;
  ucfg.frame_headroom = 0;
  ucfg.flags = 0;
  int err = xsk_umem__create(&umem_, area_, area_size_, &fill_, &comp_, &ucfg);
  if (err) {
    umem_ = nullptr;
    *call = "xsk_umem__create";
    return err;
  }
  xsk_socket_config scfg = {};
  scfg.rx_size = ring_size_;
  scfg.tx_size = ring_size_;
  scfg.libxdp_flags = XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD;  // our program is attached already
  scfg.xdp_flags = 0;
  scfg.bind_flags = bind_flags;
  err = xsk_socket__create(&xsk_, ifname.c_str(), queue_id_, umem_, &rx_, &tx_, &scfg);
  if (err) {
    xsk_ = nullptr;
    xsk_umem__delete(umem_);
    umem_ = nullptr;
    *call = "xsk_socket__create";
    return err;
  }
  return 0;
}

// register(xsksMapFd): puts the socket into the program's XSKMAP at its queue, from
// which moment XDP redirects the queue's traffic here; so the caller stocks the fill ring
// first. The map fd may come from another thread of this process: it is checked to be
// the heimdall XSKMAP, so a stale number (program closed, fd reused) fails loudly instead
// of writing elsewhere. The fd is not kept: the kernel drops the entry when the socket
// is released.
Napi::Value XskSocket::RegisterJs(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  EnsureOpen(env);
  if (!info[0].IsNumber()) throw Napi::TypeError::New(env, "register(xsksMapFd): xsksMapFd must be a number");
  int map_fd = info[0].As<Napi::Number>().Int32Value();
  bpf_map_info mi = {};
  uint32_t len = sizeof(mi);
  int err = bpf_obj_get_info_by_fd(map_fd, &mi, &len);
  if (err)
    ThrowErrno(env, err, "bpf_obj_get_info_by_fd",
               "xsksMapFd " + std::to_string(map_fd) + " is not an open BPF map (was the XdpProgram closed?)");
  if (mi.type != BPF_MAP_TYPE_XSKMAP || mi.key_size != 4 || mi.value_size != 4 || strcmp(mi.name, HEIMDALL_MAP_XSKS) != 0)
    ThrowErrno(env, EINVAL, "bpf_obj_get_info_by_fd",
               "xsksMapFd " + std::to_string(map_fd) + " is not the " HEIMDALL_MAP_XSKS " of a heimdall program; pass XdpProgram.describe().xsksMapFd");
  if (queue_id_ >= mi.max_entries) throw Napi::RangeError::New(env, "queueId beyond the capacity of " HEIMDALL_MAP_XSKS);
  int fd = fd_;
  uint32_t key = queue_id_;
  err = bpf_map_update_elem(map_fd, &key, &fd, BPF_ANY);
  if (err) ThrowErrno(env, err, "bpf_map_update_elem", "cannot register the AF_XDP socket in " HEIMDALL_MAP_XSKS);
  registered_ = true;
  return env.Undefined();
}

XskSocket::~XskSocket() {
  // Finalizer: JavaScript dropped the socket without close(). Whoever still holds the
  // UMEM ArrayBuffer must not keep a pointer into unmapped memory, so detach it too.
  try {
    if (cleanup_) {
      napi_remove_async_cleanup_hook(cleanup_);
      cleanup_ = nullptr;
    }
    if (!env_gone_ && !umem_ab_.IsEmpty()) {
      Napi::HandleScope scope(Env());
      Napi::ArrayBuffer ab = umem_ab_.Value();
      if (!ab.IsEmpty() && !ab.IsDetached()) ab.Detach();
    }
  } catch (...) {
  }
  ReleaseNative(nullptr);
  if (async_ctx_) napi_async_destroy(Env(), async_ctx_);
  async_ctx_ = nullptr;
}

void XskSocket::ReleaseNative(napi_async_cleanup_hook_handle finish) {
  if (poll_) {
    // Stop polling before the fd goes: uv_close takes the fd out of epoll at once, the
    // handle memory is freed in its close callback.
    poll_->owner = nullptr;
    poll_->finish = finish;
    finish = nullptr;
    uv_close(reinterpret_cast<uv_handle_t *>(&poll_->handle), OnPollClosed);
    poll_ = nullptr;
  }
  // Deleting the socket unmaps its rings; the kernel then releases the socket, which
  // removes it from every XSKMAP it is in (only if it is still the entry there).
  if (xsk_) xsk_socket__delete(xsk_);
  xsk_ = nullptr;
  if (umem_) xsk_umem__delete(umem_);
  umem_ = nullptr;
  if (area_) munmap(area_, area_size_);
  area_ = nullptr;
  fd_ = -1;
  if (finish) napi_remove_async_cleanup_hook(finish);
}

void XskSocket::OnPollClosed(uv_handle_t *handle) {
  auto *p = reinterpret_cast<PollHandle *>(handle);
  if (p->finish) napi_remove_async_cleanup_hook(p->finish);
  delete p;
}

// The environment (a worker thread, or the main thread at exit) is going away and
// JavaScript never closed this socket: free the native side without any JS call.
void XskSocket::AsyncCleanup(napi_async_cleanup_hook_handle handle, void *arg) {
  auto *self = static_cast<XskSocket *>(arg);
  self->cleanup_ = nullptr;
  self->env_gone_ = true;
  self->ReleaseNative(handle);
}

void XskSocket::EnsureOpen(Napi::Env env) const {
  if (!xsk_) throw Napi::Error::New(env, "XskSocket is closed");
}

// umem(): the UMEM as an external ArrayBuffer (no copy), the same object every call.
Napi::Value XskSocket::Umem(const Napi::CallbackInfo &info) {
  EnsureOpen(info.Env());
  return umem_ab_.Value();
}

// The fill ring's wakeup: only drivers in zero-copy mode clear and set it; recvfrom is the
// cheap syscall that makes the kernel look at the fill ring again.
void XskSocket::KickFill() {
  if (!need_wakeup_ || !xsk_ring_prod__needs_wakeup(&fill_)) return;
  fill_kicks_++;
  if (recvfrom(fd_, nullptr, 0, MSG_DONTWAIT, nullptr, nullptr) < 0 && errno != EAGAIN && errno != EBUSY) {
    kick_errors_++;
    last_kick_errno_ = errno;
  }
}

// Copy mode transmits inside sendto(); a kernel without XDP_MAX_TX_SKB_BUDGET stops after
// 32 frames with EAGAIN, so kick again while the kernel is making progress. Errors are
// counted, never thrown: the descriptors are on the ring already and will complete later.
bool XskSocket::KickTx() {
  if (need_wakeup_ && !xsk_ring_prod__needs_wakeup(&tx_)) return false;
  const uint32_t max_kicks = ring_size_ / 32 + 2;
  for (uint32_t i = 0; i < max_kicks; i++) {
    uint32_t before = __atomic_load_n(tx_.consumer, __ATOMIC_ACQUIRE);
    tx_kicks_++;
    if (sendto(fd_, nullptr, 0, MSG_DONTWAIT, nullptr, 0) >= 0) return false;
    int e = errno;
    if (e == EINTR) continue;
    if (e == EAGAIN || e == EBUSY) {
      uint32_t after = __atomic_load_n(tx_.consumer, __ATOMIC_ACQUIRE);
      if (after == *tx_.producer) return false;  // all taken
      if (after == before) return true;          // refused: the device queue or the completion ring is full
      continue;
    }
    kick_errors_++;
    last_kick_errno_ = e;  // ENETDOWN, ENOBUFS, ENXIO: the frames come back on the completion ring
    return false;
  }
  return false;
}

// fill(addrs, n, offset = 0): puts addrs[offset .. offset+n) on the fill ring, as many as
// fit; returns how many. Every address must be the start of a UMEM frame.
Napi::Value XskSocket::Fill(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  EnsureOpen(env);
  ArraySpan<uint32_t> a = ArgUint32Array(info, 0, "addrs");
  uint32_t n = ArgUint32(info, 1, "n");
  uint32_t offset = info.Length() > 2 && !info[2].IsUndefined() ? ArgUint32(info, 2, "offset") : 0;
  if (offset > a.len || n > a.len - offset) throw Napi::RangeError::New(env, "offset + n beyond the end of addrs");
  const uint32_t *src = a.data + offset;
  const uint32_t mask = frame_size_ - 1;
  for (uint32_t i = 0; i < n; i++)
    if ((src[i] & mask) || src[i] >= area_size_)
      throw Napi::RangeError::New(env, "fill address " + std::to_string(src[i]) + " is not the start of a UMEM frame");
  uint32_t k = std::min(n, xsk_prod_nb_free(&fill_, n));
  uint32_t idx = 0;
  if (k && xsk_ring_prod__reserve(&fill_, k, &idx) == k) {
    for (uint32_t i = 0; i < k; i++) *xsk_ring_prod__fill_addr(&fill_, idx + i) = src[i];
    xsk_ring_prod__submit(&fill_, k);
  } else {
    k = 0;
  }
  filled_ += k;
  KickFill();
  return Napi::Number::New(env, k);
}

// rx(out, max): receives up to max descriptors as pairs (addr, len) into out; returns the
// count. The frames are the caller's until it fills or transmits them again.
Napi::Value XskSocket::Rx(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  EnsureOpen(env);
  ArraySpan<uint32_t> out = ArgUint32Array(info, 0, "out");
  uint32_t max = ArgUint32(info, 1, "max");
  if (max > out.len / 2) throw Napi::RangeError::New(env, "max beyond out.length / 2");
  uint32_t idx = 0;
  uint32_t n = xsk_ring_cons__peek(&rx_, max, &idx);
  for (uint32_t i = 0; i < n; i++) {
    const xdp_desc *d = xsk_ring_cons__rx_desc(&rx_, idx + i);
    out.data[2 * i] = static_cast<uint32_t>(d->addr);
    out.data[2 * i + 1] = d->len;
  }
  if (n) {
    xsk_ring_cons__release(&rx_, n);
    rx_packets_ += n;
  } else {
    KickFill();
  }
  return Napi::Number::New(env, n);
}

// tx(descs, n): submits pairs (addr, len) descs[0 .. 2n) to the TX ring, as many as fit,
// and kicks the kernel if it asked for it; returns how many were submitted, plus
// kTxRefused (2^20, above any ring size) when the kernel refused the kick without taking
// anything (copy mode: the device queue full), so that the caller retries soon without a
// call of its own to ask. A frame is the caller's again only when complete() returns its
// address.
static constexpr uint32_t kTxRefused = 1u << 20;
static_assert(kTxRefused > kMaxRing, "the flag must sit above any count tx() returns");

Napi::Value XskSocket::Tx(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  EnsureOpen(env);
  ArraySpan<uint32_t> d = ArgUint32Array(info, 0, "descs");
  uint32_t n = ArgUint32(info, 1, "n");
  if (n > d.len / 2) throw Napi::RangeError::New(env, "n beyond descs.length / 2");
  const uint32_t mask = frame_size_ - 1;
  for (uint32_t i = 0; i < n; i++) {
    uint32_t addr = d.data[2 * i], len = d.data[2 * i + 1];
    if (addr >= area_size_ || len == 0 || (addr & mask) + static_cast<uint64_t>(len) > frame_size_)
      throw Napi::RangeError::New(env, "tx descriptor " + std::to_string(i) + " (" + std::to_string(addr) + ", " + std::to_string(len) +
                                           ") is empty or crosses its UMEM frame");
  }
  uint32_t k = std::min(n, xsk_prod_nb_free(&tx_, n));
  uint32_t idx = 0;
  if (k && xsk_ring_prod__reserve(&tx_, k, &idx) == k) {
    for (uint32_t i = 0; i < k; i++) {
      xdp_desc *t = xsk_ring_prod__tx_desc(&tx_, idx + i);
      t->addr = d.data[2 * i];
      t->len = d.data[2 * i + 1];
      t->options = 0;
    }
    xsk_ring_prod__submit(&tx_, k);
  } else {
    k = 0;
  }
  tx_packets_ += k;
  bool refused = __atomic_load_n(tx_.consumer, __ATOMIC_ACQUIRE) != *tx_.producer && KickTx();
  return Napi::Number::New(env, k | (refused ? kTxRefused : 0));
}

// txWaiting(): descriptors on the TX ring the kernel has not taken yet: those a refused
// kick left (copy mode), or, in zero-copy mode, those the driver has not reached.
Napi::Value XskSocket::TxWaiting(const Napi::CallbackInfo &info) {
  EnsureOpen(info.Env());
  return Napi::Number::New(info.Env(), *tx_.producer - __atomic_load_n(tx_.consumer, __ATOMIC_ACQUIRE));
}

// complete(out, max): drains up to max transmitted frame addresses from the completion
// ring into out; returns the count.
Napi::Value XskSocket::Complete(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  EnsureOpen(env);
  ArraySpan<uint32_t> out = ArgUint32Array(info, 0, "out");
  uint32_t max = ArgUint32(info, 1, "max");
  if (max > out.len) throw Napi::RangeError::New(env, "max beyond out.length");
  uint32_t idx = 0;
  uint32_t n = xsk_ring_cons__peek(&comp_, max, &idx);
  for (uint32_t i = 0; i < n; i++) out.data[i] = static_cast<uint32_t>(*xsk_ring_cons__comp_addr(&comp_, idx + i));
  if (n) xsk_ring_cons__release(&comp_, n);
  completed_ += n;
  return Napi::Number::New(env, n);
}

// poll(callback): calls callback() whenever the RX ring has descriptors (level
// triggered: again on the next loop turn if the callback left some), or callback(err)
// once if the socket reports an error, after which polling stops. While polling, the
// socket keeps the event loop alive and is not garbage collected.
Napi::Value XskSocket::Poll(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  EnsureOpen(env);
  if (!info[0].IsFunction()) throw Napi::TypeError::New(env, "poll(callback): callback must be a function");
  if (!async_ctx_) {
    if (napi_async_init(env, nullptr, Napi::String::New(env, "HeimdallXskSocket"), &async_ctx_) != napi_ok)
      throw Napi::Error::New(env, "napi_async_init failed");
  }
  if (!poll_) {
    uv_loop_t *loop = nullptr;
    if (napi_get_uv_event_loop(env, &loop) != napi_ok || !loop) throw Napi::Error::New(env, "no event loop");
    auto *p = new PollHandle();
    int r = uv_poll_init(loop, &p->handle, fd_);
    if (r) {
      delete p;
      ThrowErrno(env, -r, "uv_poll_init", "cannot watch the AF_XDP socket");
    }
    p->owner = this;
    poll_ = p;
  }
  callback_ = Napi::Persistent(info[0].As<Napi::Function>());
  int r = uv_poll_start(&poll_->handle, UV_READABLE, OnPoll);
  if (r) ThrowErrno(env, -r, "uv_poll_start", "cannot watch the AF_XDP socket");
  if (!ref_held_) {
    Ref();
    ref_held_ = true;
  }
  return env.Undefined();
}

Napi::Value XskSocket::StopPoll(const Napi::CallbackInfo &info) {
  if (poll_) uv_poll_stop(&poll_->handle);
  callback_.Reset();
  if (ref_held_) {
    Unref();
    ref_held_ = false;
  }
  return info.Env().Undefined();
}

void XskSocket::OnPoll(uv_poll_t *handle, int status, int /*events*/) {
  auto *p = reinterpret_cast<PollHandle *>(handle);
  XskSocket *self = p->owner;
  if (!self || self->env_gone_ || !self->xsk_ || self->callback_.IsEmpty()) return;
  self->poll_wakeups_++;
  napi_env env = self->Env();
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  // Nothing may throw into libuv: every N-API failure ends here.
  try {
    napi_value argv[1];
    size_t argc = 0;
    if (status < 0) {
      // libuv reports EPOLLERR as EBADF; the socket's own error says what happened
      // (ENETDOWN when the interface went away).
      uv_poll_stop(handle);
      int soerr = 0;
      socklen_t len = sizeof(soerr);
      if (getsockopt(self->fd_, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0 || soerr == 0) soerr = -status;
      try {
        ThrowErrno(self->Env(), soerr, "poll", "the AF_XDP socket on queue " + std::to_string(self->queue_id_) +
                                                    " failed (interface gone or down?); close it and open a new one");
      } catch (const Napi::Error &e) {
        argv[0] = e.Value();
        argc = 1;
      }
    }
    napi_value fn = self->callback_.Value();
    napi_value recv = self->Value();
    napi_value result;
    // The callback may close the socket: `self` is not touched after this call.
    if (napi_make_callback(env, self->async_ctx_, recv, fn, argc, argv, &result) == napi_pending_exception) {
      napi_value exc;
      if (napi_get_and_clear_last_exception(env, &exc) == napi_ok) napi_fatal_exception(env, exc);
    }
  } catch (...) {
  }
  napi_close_handle_scope(env, scope);
}

// stats(): the kernel's struct xdp_statistics and this socket's own counters.
Napi::Value XskSocket::Stats(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  EnsureOpen(env);
  xdp_statistics st = {};
  socklen_t len = sizeof(st);
  if (getsockopt(fd_, SOL_XDP, XDP_STATISTICS, &st, &len) != 0)
    ThrowErrno(env, errno, "getsockopt", "cannot read XDP_STATISTICS of the AF_XDP socket");
  Napi::Object o = Napi::Object::New(env);
  o.Set("rxDropped", static_cast<double>(st.rx_dropped));
  o.Set("rxInvalidDescs", static_cast<double>(st.rx_invalid_descs));
  o.Set("txInvalidDescs", static_cast<double>(st.tx_invalid_descs));
  o.Set("rxRingFull", static_cast<double>(st.rx_ring_full));
  o.Set("rxFillRingEmptyDescs", static_cast<double>(st.rx_fill_ring_empty_descs));
  o.Set("txRingEmptyDescs", static_cast<double>(st.tx_ring_empty_descs));
  o.Set("rxPackets", static_cast<double>(rx_packets_));
  o.Set("txPackets", static_cast<double>(tx_packets_));
  o.Set("filled", static_cast<double>(filled_));
  o.Set("completed", static_cast<double>(completed_));
  o.Set("txKicks", static_cast<double>(tx_kicks_));
  o.Set("fillKicks", static_cast<double>(fill_kicks_));
  o.Set("kickErrors", static_cast<double>(kick_errors_));
  o.Set("lastKickErrno", last_kick_errno_);
  o.Set("pollWakeups", static_cast<double>(poll_wakeups_));
  return o;
}

Napi::Value XskSocket::Describe(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("open", xsk_ != nullptr);
  o.Set("fd", fd_);
  o.Set("ifindex", ifindex_);
  o.Set("queueId", queue_id_);
  o.Set("mode", zerocopy_ ? "zerocopy" : "copy");
  o.Set("frameSize", frame_size_);
  o.Set("frameCount", frame_count_);
  o.Set("ringSize", ring_size_);
  o.Set("umemBytes", static_cast<double>(area_size_));
  o.Set("needWakeup", need_wakeup_);
  o.Set("registered", registered_);
  o.Set("txBudget", tx_budget_);
  o.Set("polling", poll_ != nullptr && ref_held_);
  return o;
}

// close(): detaches the UMEM ArrayBuffer (every view of it reads as empty from now on),
// stops polling, closes the socket (the kernel drops it from the XSKMAP) and unmaps the
// UMEM. Idempotent.
Napi::Value XskSocket::Close(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (cleanup_) {
    napi_remove_async_cleanup_hook(cleanup_);
    cleanup_ = nullptr;
  }
  if (!umem_ab_.IsEmpty()) {
    Napi::ArrayBuffer ab = umem_ab_.Value();
    if (!ab.IsDetached()) ab.Detach();
    umem_ab_.Reset();
  }
  callback_.Reset();
  if (ref_held_) {
    Unref();
    ref_held_ = false;
  }
  ReleaseNative(nullptr);
  return env.Undefined();
}

Napi::Value XskSocket::GetFd(const Napi::CallbackInfo &info) { return Napi::Number::New(info.Env(), fd_); }

}  // namespace heimdall
