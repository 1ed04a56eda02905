// SPDX-License-Identifier: MIT
// program.h: XdpProgram, one loaded heimdall XDP object and what can be done with it.
#pragma once

#include <napi.h>

#include <cstdint>

struct bpf_object;
struct bpf_program;

namespace heimdall {

class XdpProgram : public Napi::ObjectWrap<XdpProgram> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit XdpProgram(const Napi::CallbackInfo &info);
  ~XdpProgram() override;

 private:
  void Release();
  void EnsureOpen(Napi::Env env) const;

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
  Napi::Value TestRun(const Napi::CallbackInfo &info);
  Napi::Value BenchRun(const Napi::CallbackInfo &info);
  Napi::Value Close(const Napi::CallbackInfo &info);
  Napi::Value Describe(const Napi::CallbackInfo &info);

  bpf_object *obj_ = nullptr;
  int prog_fd_ = -1;
  uint32_t prog_id_ = 0;
  int hot_fd_ = -1;
  int hits_fd_ = -1;
  int stats_fd_ = -1;
  int xsks_fd_ = -1;
  int runtime_fd_ = -1;
  uint32_t hot_capacity_ = 0;
  int ncpus_ = 1;
  uint64_t hash_seed_ = 0;
  volatile uint64_t *hits_ = nullptr;  // hot_hits, mapped: stripe per CPU of hot_capacity_
  size_t hits_len_ = 0;
  int ifindex_ = 0;
  uint32_t attach_mode_flags_ = 0;
};

}  // namespace heimdall
