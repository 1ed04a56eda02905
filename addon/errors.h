// SPDX-License-Identifier: MIT
// errors.h: how the addon reports a failed system or libbpf call to JavaScript.
#pragma once

#include <napi.h>
#include <string>

namespace heimdall {

// Throws an Error whose `code` is the errno name ('EPERM'), `errno` the number and
// `syscall` the failing call, with a message that says what the operator can do.
[[noreturn]] void ThrowErrno(Napi::Env env, int err, const char *call, const std::string &what);

// The tail of what libbpf and libxdp said on this thread since the last reset (verifier log and
// the like), attached to errors as `log`.
void ResetLibbpfLog();
std::string LibbpfLog();
void InstallLibbpfPrinter();

}  // namespace heimdall
