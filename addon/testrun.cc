// SPDX-License-Identifier: MIT
#include "testrun.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>

#include <cerrno>
#include <cstdint>
#include <string>
#include <vector>

#include "args.h"
#include "errors.h"

namespace heimdall {

namespace {

// Room past the input for a program that grows the frame (bpf_xdp_adjust_tail).
constexpr size_t kOutSlack = 4096;

// The fd comes from JavaScript as a plain number and may be stale (program closed, number
// reused). A program of another type is refused here: the kernel would run it on the
// frame with that type's meaning. An fd that is no program at all either fails to answer
// or, if its info (a map's, a link's) happens to read as the XDP type, is refused by the
// kernel at the run. A number reused by another XDP program cannot be told apart: take
// the fd from describe() for each run, as FastPath does.
int ProgFd(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int fd = static_cast<int>(ArgUint32(info, 0, "progFd", 0, INT32_MAX));
  std::string what = "progFd " + std::to_string(fd);
  bpf_prog_info pi = {};
  uint32_t len = sizeof(pi);
  if (int err = bpf_obj_get_info_by_fd(fd, &pi, &len))
    ThrowErrno(env, err, "bpf_obj_get_info_by_fd", what + " is not an open BPF program (was the XdpProgram closed?)");
  if (pi.type != BPF_PROG_TYPE_XDP)
    ThrowErrno(env, EINVAL, "bpf_obj_get_info_by_fd", what + " is not an XDP program; pass XdpProgram.describe().progFd");
  return fd;
}

Napi::Buffer<uint8_t> Frame(const Napi::CallbackInfo &info) {
  auto in = ArgBuffer(info, 1, "frame");
  if (in.Length() > UINT32_MAX - kOutSlack) throw Napi::RangeError::New(info.Env(), "frame is too large for BPF_PROG_TEST_RUN");
  return in;
}

}  // namespace

// testRun(progFd, frame, repeat = 1): one BPF_PROG_TEST_RUN, the program run `repeat`
// times on the frame; returns { action, frame, durationNs } (the mean per run).
Napi::Value TestRunJs(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int fd = ProgFd(info);
  auto in = Frame(info);
  // 0 is what the kernel reads as 1.
  uint32_t repeat = info[2].IsUndefined() ? 1 : ArgUint32(info, 2, "repeat", 0, INT32_MAX);
  std::vector<uint8_t> out(in.Length() + kOutSlack);
  LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = in.Data(), .data_out = out.data(), .data_size_in = static_cast<uint32_t>(in.Length()),
              .data_size_out = static_cast<uint32_t>(out.size()), .repeat = static_cast<int>(repeat));
  if (int err = bpf_prog_test_run_opts(fd, &o)) ThrowErrno(env, err, "bpf_prog_test_run_opts", "test run failed");
  Napi::Object res = Napi::Object::New(env);
  res.Set("action", o.retval);
  res.Set("frame", Napi::Buffer<uint8_t>::Copy(env, out.data(), o.data_size_out));
  res.Set("durationNs", o.duration);
  return res;
}

// benchRun(progFd, frame | frames[], iterations): runs the program once per test run,
// `iterations` times, each on a fresh copy of a frame (a reply rewrites it, so repeat
// would measure the second pass over a reply). With an array the runs cycle through its
// frames in order, so a batch of different questions shows the hot map's cache
// footprint (one repeated frame keeps its entry in L1). Returns the action of the last
// run, how many runs ended in each action (XDP_ABORTED..XDP_REDIRECT), and the kernel's
// own mean time per run.
Napi::Value BenchRunJs(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int fd = ProgFd(info);
  std::vector<Napi::Buffer<uint8_t>> frames;
  if (info.Length() > 1 && info[1].IsArray()) {
    Napi::Array arr = info[1].As<Napi::Array>();
    if (arr.Length() == 0 || arr.Length() > (1u << 24)) throw Napi::RangeError::New(env, "frames must hold 1..2^24 frames");
    for (uint32_t i = 0; i < arr.Length(); i++) {
      Napi::Value f = arr.Get(i);
      if (!f.IsBuffer()) throw Napi::TypeError::New(env, "frames must be Buffers");
      auto b = f.As<Napi::Buffer<uint8_t>>();
      if (b.Length() > UINT32_MAX - kOutSlack) throw Napi::RangeError::New(env, "frame is too large for BPF_PROG_TEST_RUN");
      frames.push_back(b);
    }
  } else {
    frames.push_back(Frame(info));
  }
  size_t longest = 0;
  for (auto &f : frames) longest = f.Length() > longest ? f.Length() : longest;
  uint32_t iterations = ArgUint32(info, 2, "iterations", 1);
  std::vector<uint8_t> out(longest + kOutSlack);
  uint64_t total = 0;
  uint32_t retval = 0;
  double actions[5] = {0, 0, 0, 0, 0};
  for (uint32_t i = 0; i < iterations; i++) {
    auto &in = frames[i % frames.size()];
    LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = in.Data(), .data_out = out.data(), .data_size_in = static_cast<uint32_t>(in.Length()),
                .data_size_out = static_cast<uint32_t>(out.size()), .repeat = 1);
    if (int err = bpf_prog_test_run_opts(fd, &o)) ThrowErrno(env, err, "bpf_prog_test_run_opts", "test run failed");
    total += o.duration;
    retval = o.retval;
    if (retval < 5) actions[retval]++;
  }
  Napi::Object res = Napi::Object::New(env);
  res.Set("action", retval);
  res.Set("meanNs", static_cast<double>(total) / iterations);
  Napi::Array counts = Napi::Array::New(env, 5);
  for (uint32_t a = 0; a < 5; a++) counts.Set(a, actions[a]);
  res.Set("actions", counts);
  return res;
}

}  // namespace heimdall
