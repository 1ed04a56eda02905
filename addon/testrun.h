// SPDX-License-Identifier: MIT
// testrun.h: BPF_PROG_TEST_RUN of a loaded XDP program, for tests and benchmarks only;
// the forwarder itself never calls these.
#pragma once

#include <napi.h>

namespace heimdall {

// Module functions: testRun(progFd, frame, repeat = 1) and benchRun(progFd, frame, iterations).
Napi::Value TestRunJs(const Napi::CallbackInfo &info);
Napi::Value BenchRunJs(const Napi::CallbackInfo &info);

}  // namespace heimdall
