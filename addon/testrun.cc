// SPDX-License-Identifier: MIT
#include "testrun.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>
#include <unistd.h>

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
// reused): it must name an XDP program, or the run fails loudly rather than running
// whatever the number now refers to. The fd's kind is read from its /proc link, because
// BPF_OBJ_GET_INFO_BY_FD answers for maps and links too, in layouts whose first field a
// bpf_prog_info would read as a program type.
int ProgFd(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int fd = static_cast<int>(ArgUint32(info, 0, "progFd", 0, INT32_MAX));
  std::string what = "progFd " + std::to_string(fd);
  std::string proc = "/proc/self/fd/" + std::to_string(fd);
  char link[64];
  ssize_t n = readlink(proc.c_str(), link, sizeof(link));
  if (n < 0) {
    int e = errno;
    ThrowErrno(env, e, "readlink", what + " is not an open fd (was the XdpProgram closed?)");
  }
  if (std::string(link, static_cast<size_t>(n)) != "anon_inode:bpf-prog")
    ThrowErrno(env, EINVAL, "readlink", what + " is not a BPF program (was the XdpProgram closed and the fd reused?)");
  bpf_prog_info pi = {};
  uint32_t len = sizeof(pi);
  if (int err = bpf_obj_get_info_by_fd(fd, &pi, &len)) ThrowErrno(env, err, "bpf_obj_get_info_by_fd", "cannot read what program " + what + " is");
  if (pi.type != BPF_PROG_TYPE_XDP) ThrowErrno(env, EINVAL, "bpf_obj_get_info_by_fd", what + " is not an XDP program; pass XdpProgram.describe().progFd");
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

// benchRun(progFd, frame, iterations): runs the program once per test run, `iterations`
// times, each on a fresh copy of the frame (a reply rewrites it, so repeat would measure
// the second pass over a reply). Returns the action of the last run and the kernel's own
// mean time per run.
Napi::Value BenchRunJs(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  int fd = ProgFd(info);
  auto in = Frame(info);
  uint32_t iterations = ArgUint32(info, 2, "iterations", 1);
  std::vector<uint8_t> out(in.Length() + kOutSlack);
  uint64_t total = 0;
  uint32_t retval = 0;
  for (uint32_t i = 0; i < iterations; i++) {
    LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = in.Data(), .data_out = out.data(), .data_size_in = static_cast<uint32_t>(in.Length()),
                .data_size_out = static_cast<uint32_t>(out.size()), .repeat = 1);
    if (int err = bpf_prog_test_run_opts(fd, &o)) ThrowErrno(env, err, "bpf_prog_test_run_opts", "test run failed");
    total += o.duration;
    retval = o.retval;
  }
  Napi::Object res = Napi::Object::New(env);
  res.Set("action", retval);
  res.Set("meanNs", static_cast<double>(total) / iterations);
  return res;
}

}  // namespace heimdall
