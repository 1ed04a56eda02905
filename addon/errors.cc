// SPDX-License-Identifier: MIT
#include "errors.h"

#include <bpf/libbpf.h>
#include <xdp/libxdp.h>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>

namespace heimdall {

namespace {

constexpr size_t kLogKeep = 8192;
thread_local std::string libbpf_log;

int CaptureLine(bool debug, const char *fmt, va_list args) {
  if (debug) return 0;
  char line[1024];
  int n = vsnprintf(line, sizeof(line), fmt, args);
  if (n > 0) {
    libbpf_log.append(line, std::min<size_t>(n, sizeof(line) - 1));
    if (libbpf_log.size() > kLogKeep) libbpf_log.erase(0, libbpf_log.size() - kLogKeep);
  }
  return n;
}

int CapturePrint(enum libbpf_print_level level, const char *fmt, va_list args) { return CaptureLine(level == LIBBPF_DEBUG, fmt, args); }

// libxdp prints its warnings to stderr by default; the operator sees one line per error.
int CaptureXdpPrint(enum libxdp_print_level level, const char *fmt, va_list args) { return CaptureLine(level == LIBXDP_DEBUG, fmt, args); }

std::string Hint(int err) {
  switch (err) {
    case EPERM:
    case EACCES:
      return " (needs root: CAP_BPF, CAP_NET_ADMIN; run as root)";
    case ENODEV:
      return " (no such interface: check 'ip link')";
    case ENOENT:
      return " (not found)";
    default:
      return "";
  }
}

}  // namespace

void InstallLibbpfPrinter() {
  libbpf_set_print(CapturePrint);
  libxdp_set_print(CaptureXdpPrint);
}
void ResetLibbpfLog() { libbpf_log.clear(); }
std::string LibbpfLog() { return libbpf_log; }

void ThrowErrno(Napi::Env env, int err, const char *call, const std::string &what) {
  if (err < 0) err = -err;
  const char *name = strerrordesc_np(err) ? strerrorname_np(err) : nullptr;
  std::string code = name ? name : "E" + std::to_string(err);
  std::string msg = what + ": " + strerror(err) + Hint(err);
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("code", Napi::String::New(env, code));
  e.Set("errno", Napi::Number::New(env, err));
  e.Set("syscall", Napi::String::New(env, call));
  if (!libbpf_log.empty()) e.Set("log", Napi::String::New(env, libbpf_log));
  throw e;
}

}  // namespace heimdall
