// SPDX-License-Identifier: MIT
// xsk.h: XskSocket, one AF_XDP socket bound to one rx queue, with its own UMEM.
//
// Ownership: the UMEM is native memory (mmap), lent to JavaScript as one external
// ArrayBuffer without a copy; close() detaches that ArrayBuffer before the memory is
// unmapped, so JavaScript can never read freed memory. Rings are driven in batches with
// caller-supplied Uint32Arrays (no allocation per call, one native call per batch). All
// state is per instance; an async cleanup hook closes the uv poll handle, the socket and
// the UMEM when the environment (a worker thread) goes away without calling close().
#pragma once

#include <napi.h>
#include <uv.h>
#include <xdp/xsk.h>

#include <cstdint>
#include <string>

namespace heimdall {

class XskSocket : public Napi::ObjectWrap<XskSocket> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit XskSocket(const Napi::CallbackInfo &info);
  ~XskSocket() override;

 private:
  struct PollHandle;

  // Creates the UMEM and the socket with the given bind flags; on failure everything it
  // made is released and the negative errno returned, with *call naming the failing step.
  int Create(const std::string &ifname, uint16_t bind_flags, const char **call);
  // Frees every native resource; makes no N-API call, so it is safe from cleanup hooks.
  // `finish` (if any) is removed once the poll handle has finished closing.
  void ReleaseNative(napi_async_cleanup_hook_handle finish);
  void EnsureOpen(Napi::Env env) const;
  // True when the kernel refused the kick with no progress and descriptors remain.
  bool KickTx();
  void KickFill();

  static void OnPoll(uv_poll_t *handle, int status, int events);
  static void OnPollClosed(uv_handle_t *handle);
  static void AsyncCleanup(napi_async_cleanup_hook_handle handle, void *arg);

  Napi::Value Umem(const Napi::CallbackInfo &info);
  Napi::Value RegisterJs(const Napi::CallbackInfo &info);
  Napi::Value Fill(const Napi::CallbackInfo &info);
  Napi::Value Rx(const Napi::CallbackInfo &info);
  Napi::Value Tx(const Napi::CallbackInfo &info);
  Napi::Value TxWaiting(const Napi::CallbackInfo &info);
  Napi::Value Complete(const Napi::CallbackInfo &info);
  Napi::Value Poll(const Napi::CallbackInfo &info);
  Napi::Value StopPoll(const Napi::CallbackInfo &info);
  Napi::Value Stats(const Napi::CallbackInfo &info);
  Napi::Value Describe(const Napi::CallbackInfo &info);
  Napi::Value Close(const Napi::CallbackInfo &info);
  Napi::Value GetFd(const Napi::CallbackInfo &info);

  // Native resources.
  void *area_ = nullptr;
  size_t area_size_ = 0;
  xsk_umem *umem_ = nullptr;
  xsk_socket *xsk_ = nullptr;
  xsk_ring_prod fill_ = {};
  xsk_ring_cons comp_ = {};
  xsk_ring_cons rx_ = {};
  xsk_ring_prod tx_ = {};
  int fd_ = -1;
  PollHandle *poll_ = nullptr;
  napi_async_cleanup_hook_handle cleanup_ = nullptr;

  // JS-side state.
  Napi::Reference<Napi::ArrayBuffer> umem_ab_;
  Napi::FunctionReference callback_;
  napi_async_context async_ctx_ = nullptr;
  bool ref_held_ = false;   // Ref() taken while polling, so a polling socket is not collected
  bool env_gone_ = false;   // the cleanup hook ran: no more N-API calls on this object

  // Configuration.
  uint32_t frame_size_ = 0;
  uint32_t frame_count_ = 0;
  uint32_t ring_size_ = 0;
  uint32_t queue_id_ = 0;
  int ifindex_ = 0;
  bool zerocopy_ = false;
  bool need_wakeup_ = true;
  bool registered_ = false;
  uint32_t tx_budget_ = 0;  // XDP_MAX_TX_SKB_BUDGET set, 0 when the kernel lacks it

  // Counters (per instance, plain integers: one thread touches them).
  uint64_t rx_packets_ = 0;
  uint64_t tx_packets_ = 0;
  uint64_t filled_ = 0;
  uint64_t completed_ = 0;
  uint64_t tx_kicks_ = 0;
  uint64_t fill_kicks_ = 0;
  uint64_t kick_errors_ = 0;
  int last_kick_errno_ = 0;
  uint64_t poll_wakeups_ = 0;
};

}  // namespace heimdall
