// SPDX-License-Identifier: MIT
// program.h: XdpProgram, one loaded heimdall XDP object and what can be done with it.
#pragma once

#include <napi.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

struct bpf_object;
struct xdp_program;
struct hot_key;
struct hot_small;
struct hot_slot;

namespace heimdall {

// Closes a bpf_object with bpf_object__close.
struct BpfObjectClose {
  void operator()(bpf_object *obj) const noexcept;
};
using BpfObjectPtr = std::unique_ptr<bpf_object, BpfObjectClose>;

// Closes an xdp_program handle with xdp_program__close (not its bpf_object, which the
// handle only borrows).
struct XdpProgramClose {
  void operator()(xdp_program *prog) const noexcept;
};
using XdpProgramPtr = std::unique_ptr<xdp_program, XdpProgramClose>;

// A shared mapping of a BPF map's memory, unmapped when its holder goes.
class MappedRegion {
 public:
  MappedRegion() = default;
  MappedRegion(void *addr, size_t len) noexcept : addr_(addr), len_(len) {}
  MappedRegion(MappedRegion &&other) noexcept;
  MappedRegion &operator=(MappedRegion &&other) noexcept;
  MappedRegion(const MappedRegion &) = delete;
  MappedRegion &operator=(const MappedRegion &) = delete;
  ~MappedRegion() { reset(); }

  void *get() const { return addr_; }
  void reset() noexcept;

 private:
  void *addr_ = nullptr;
  size_t len_ = 0;
};

class XdpProgram : public Napi::ObjectWrap<XdpProgram> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit XdpProgram(const Napi::CallbackInfo &info);
  ~XdpProgram() override;

 private:
  void Release();
  void EnsureOpen(Napi::Env env) const;
  volatile uint64_t *Hits() const { return static_cast<volatile uint64_t *>(hits_.get()); }
  hot_slot *Slots() const { return static_cast<hot_slot *>(slots_.get()); }
  // The slot of key in its window of hot_slots, or -1; with free, also the first empty
  // slot of the window (or -1) when the key is not there.
  int64_t SlotFind(const hot_key *k, int64_t *free) const;
  void SlotWrite(uint32_t i, const hot_key *k, const hot_small *v);
  bool SlotRead(uint32_t i, hot_key *k, hot_small *v) const;

  int AttachThroughDispatcher(int ifindex, uint32_t mode_flags, uint32_t *attached_id);
  std::string ProbeObject() const;
  Napi::Value Attach(const Napi::CallbackInfo &info);
  Napi::Value Detach(const Napi::CallbackInfo &info);
  Napi::Value HotPut(const Napi::CallbackInfo &info);
  Napi::Value HotDelete(const Napi::CallbackInfo &info);
  Napi::Value HotGet(const Napi::CallbackInfo &info);
  Napi::Value HotKeys(const Napi::CallbackInfo &info);
  Napi::Value HitsRead(const Napi::CallbackInfo &info);
  Napi::Value HitsReset(const Napi::CallbackInfo &info);
  Napi::Value HitsReadAll(const Napi::CallbackInfo &info);
  uint64_t SlotHits(uint32_t slot) const;
  Napi::Value Stats(const Napi::CallbackInfo &info);
  Napi::Value StatsReset(const Napi::CallbackInfo &info);
  Napi::Value SetRuntime(const Napi::CallbackInfo &info);
  int EdgeMapFd(Napi::Env env, const std::string &name, size_t *key_size, size_t *value_size) const;
  Napi::Value EdgePut(const Napi::CallbackInfo &info);
  Napi::Value EdgeDelete(const Napi::CallbackInfo &info);
  Napi::Value EdgeKeys(const Napi::CallbackInfo &info);
  Napi::Value Close(const Napi::CallbackInfo &info);
  Napi::Value Describe(const Napi::CallbackInfo &info);

  // Empty once closed. Everything below is only meaningful while it is set; the
  // constructor assigns it last, after every step that can fail.
  BpfObjectPtr obj_;
  // hot_hits, mapped: a stripe of hot_capacity_ counters per CPU. A mapping holds its own
  // reference to the map, so it stays valid in whichever order the two are released.
  MappedRegion hits_;
  // hot_slots, mapped: the small entries, written here under each slot's sequence
  // (heimdall.h, struct hot_slot). slot_mask_ + 1 slots.
  MappedRegion slots_;
  uint32_t slot_mask_ = 0;
  int prog_fd_ = -1;
  uint32_t prog_id_ = 0;
  int hot_fd_ = -1;
  int hot_slots_fd_ = -1;
  int hits_fd_ = -1;
  int stats_fd_ = -1;
  int xsks_fd_ = -1;
  int runtime_fd_ = -1;
  int acl4_fd_ = -1;
  int acl6_fd_ = -1;
  int local_fd_ = -1;
  int acl16_fd_ = -1;
  int rrl_fd_ = -1;
  uint32_t rrl_buckets_ = 0;
  uint32_t rrl_seed_ = 0;
  uint32_t hot_capacity_ = 0;
  int ncpus_ = 1;
  uint64_t hash_seed_ = 0;
  int ifindex_ = 0;
  uint32_t attach_mode_flags_ = 0;
  // The object file, opened again to attach through a dispatcher.
  std::string path_;
  // Attached through libxdp's dispatcher: a second load of the same program as an
  // extension (freplace) of the dispatcher, over this object's maps (bpf_map__reuse_fd),
  // so every fd above serves both. The plain load stays for test runs (BPF_PROG_TEST_RUN
  // cannot run an extension) and for a direct attach. Declared after the object: the
  // handle is released first.
  BpfObjectPtr ext_obj_;
  XdpProgramPtr ext_prog_;
  bool via_dispatcher_ = false;
  uint32_t attached_id_ = 0;
};

}  // namespace heimdall
