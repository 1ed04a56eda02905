// SPDX-License-Identifier: MIT
// binding.cc: the addon's module: the XdpProgram and XskSocket classes, the layout of the shared
// structs as the C compiler sees them (so TypeScript never keeps a copy), the clock the
// XDP program uses, interface helpers, and BPF_PROG_TEST_RUN for tests and benchmarks.
#include <napi.h>

#include <cstddef>
#include <ctime>

#include "errors.h"
#include "heimdall.h"
#include "program.h"
#include "testrun.h"
#include "xdp_attach.h"
#include "xsk.h"

namespace heimdall {
namespace {

#define FIELD(obj, type, field) obj.Set(#field, Napi::Number::New(env, offsetof(type, field)))

Napi::Object Layout(Napi::Env env) {
  Napi::Object l = Napi::Object::New(env);
  l.Set("HOT_NAME_MAX", HOT_NAME_MAX);
  l.Set("HOT_RECORDS_MAX", HOT_RECORDS_MAX);
  l.Set("HOT_RR_MAX", HOT_RR_MAX);
  l.Set("HOT_ENTRIES_DEFAULT", HOT_ENTRIES_DEFAULT);
  l.Set("MAX_QUEUES", HEIMDALL_MAX_QUEUES);
  l.Set("MAX_PORTS", HEIMDALL_MAX_PORTS);
  l.Set("HOT_KEY_DO", HOT_KEY_DO);
  l.Set("HOT_VAL_RCODE_MASK", HOT_VAL_RCODE_MASK);
  l.Set("HOT_VAL_AD", HOT_VAL_AD);
  l.Set("HOT_HASH_MUL1", Napi::BigInt::New(env, static_cast<uint64_t>(HOT_HASH_MUL1)));
  l.Set("HOT_HASH_MUL2", Napi::BigInt::New(env, static_cast<uint64_t>(HOT_HASH_MUL2)));
  l.Set("PROG_NAME", HEIMDALL_PROG_NAME);

  Napi::Object key = Napi::Object::New(env);
  key.Set("size", sizeof(hot_key));
  FIELD(key, hot_key, name_hash);
  FIELD(key, hot_key, qtype);
  FIELD(key, hot_key, qclass);
  FIELD(key, hot_key, flags);
  FIELD(key, hot_key, name_len);
  l.Set("key", key);

  Napi::Object val = Napi::Object::New(env);
  val.Set("size", sizeof(hot_value));
  FIELD(val, hot_value, origin_ns);
  FIELD(val, hot_value, expires_ns);
  FIELD(val, hot_value, hit_slot);
  FIELD(val, hot_value, flags);
  FIELD(val, hot_value, ancount);
  FIELD(val, hot_value, nscount);
  FIELD(val, hot_value, arcount);
  FIELD(val, hot_value, records_len);
  FIELD(val, hot_value, rr_count);
  FIELD(val, hot_value, records_csum);
  FIELD(val, hot_value, name);
  FIELD(val, hot_value, ttl);
  FIELD(val, hot_value, ttl_off);
  FIELD(val, hot_value, records);
  l.Set("value", val);

  Napi::Array names = Napi::Array::New(env, STAT_MAX);
  Napi::Array help = Napi::Array::New(env, STAT_MAX);
  uint32_t i = 0;
#define HEIMDALL_STAT_JS(name, desc) \
  names.Set(i, #name);               \
  help.Set(i, desc);                 \
  i++;
  HEIMDALL_STATS(HEIMDALL_STAT_JS)
#undef HEIMDALL_STAT_JS
  l.Set("statNames", names);
  l.Set("statHelp", help);

  Napi::Object maps = Napi::Object::New(env);
  maps.Set("hot", HEIMDALL_MAP_HOT);
  maps.Set("hits", HEIMDALL_MAP_HITS);
  maps.Set("stats", HEIMDALL_MAP_STATS);
  maps.Set("xsks", HEIMDALL_MAP_XSKS);
  maps.Set("runtime", HEIMDALL_MAP_RUNTIME);
  l.Set("maps", maps);
  return l;
}

// CLOCK_MONOTONIC in nanoseconds: the clock of bpf_ktime_get_ns() and, as of the last tick,
// of bpf_ktime_get_coarse_ns(), which the XDP program reads.
Napi::Value MonotonicNs(const Napi::CallbackInfo &info) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return Napi::BigInt::New(info.Env(), static_cast<uint64_t>(static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + ts.tv_nsec));
}

}  // namespace

Napi::Object InitModule(Napi::Env env, Napi::Object exports) {
  InstallLibbpfPrinter();
  exports.Set("XdpProgram", XdpProgram::Init(env));
  exports.Set("XskSocket", XskSocket::Init(env));
  exports.Set("layout", Layout(env));
  exports.Set("monotonicNs", Napi::Function::New(env, MonotonicNs));
  exports.Set("xdpStatus", Napi::Function::New(env, XdpStatusJs));
  exports.Set("detachStale", Napi::Function::New(env, DetachStaleJs));
  exports.Set("testRun", Napi::Function::New(env, TestRunJs));
  exports.Set("benchRun", Napi::Function::New(env, BenchRunJs));
  return exports;
}

}  // namespace heimdall

static Napi::Object Init(Napi::Env env, Napi::Object exports) { return heimdall::InitModule(env, exports); }
NODE_API_MODULE(heimdall, Init)
