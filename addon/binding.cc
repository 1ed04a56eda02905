// SPDX-License-Identifier: MIT
// binding.cc: the addon's module: the XdpProgram and XskSocket classes, the layout of the shared
// structs as the C compiler sees them (so TypeScript never keeps a copy), the clock the
// XDP program uses, interface helpers, and BPF_PROG_TEST_RUN for tests and benchmarks.
#include <napi.h>

#include <linux/sock_diag.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <ctime>
#include <vector>

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
  l.Set("HOT_SMALL_NAME_MAX", HOT_SMALL_NAME_MAX);
  l.Set("HOT_SMALL_RECORDS_MAX", HOT_SMALL_RECORDS_MAX);
  l.Set("HOT_SMALL_RR_MAX", HOT_SMALL_RR_MAX);
  l.Set("HOT_ENTRIES_DEFAULT", HOT_ENTRIES_DEFAULT);
  l.Set("MAX_QUEUES", HEIMDALL_MAX_QUEUES);
  l.Set("MAX_PORTS", HEIMDALL_MAX_PORTS);
  l.Set("HOT_KEY_DO", HOT_KEY_DO);
  l.Set("HOT_KEY_CD", HOT_KEY_CD);
  l.Set("HOT_VAL_RCODE_MASK", HOT_VAL_RCODE_MASK);
  l.Set("HOT_VAL_AD", HOT_VAL_AD);
  l.Set("HOT_HASH_MUL1", Napi::BigInt::New(env, static_cast<uint64_t>(HOT_HASH_MUL1)));
  l.Set("HOT_HASH_MUL2", Napi::BigInt::New(env, static_cast<uint64_t>(HOT_HASH_MUL2)));
  l.Set("PROG_NAME", HEIMDALL_PROG_NAME);
  l.Set("RRL_BUCKETS_DEFAULT", RRL_BUCKETS_DEFAULT);
  l.Set("RRL_BURST", RRL_BURST);
  l.Set("RRL_UNIT_SHIFT", RRL_UNIT_SHIFT);
  l.Set("RRL_STAMP_SHIFT", RRL_STAMP_SHIFT);
  l.Set("RRL_STAMP_AHEAD", RRL_STAMP_AHEAD);
  l.Set("RRL_WINDOW_MAX", RRL_WINDOW_MAX);
  l.Set("RRL_BUCKET_SIZE", sizeof(rrl_bucket));
  l.Set("RRL_MUL1", RRL_MUL1);
  l.Set("RRL_MUL2", RRL_MUL2);
  l.Set("RRL_TOKEN_ERROR", RRL_TOKEN_ERROR);
  l.Set("RRL_TOKEN_ALL", RRL_TOKEN_ALL);
  Napi::Object classes = Napi::Object::New(env);
  classes.Set("answer", RRL_CLASS_ANSWER);
  classes.Set("nodata", RRL_CLASS_NODATA);
  classes.Set("nxdomain", RRL_CLASS_NXDOMAIN);
  classes.Set("error", RRL_CLASS_ERROR);
  l.Set("RRL_CLASS", classes);
  Napi::Object acl = Napi::Object::New(env);
  acl.Set("refuse", ACL_REFUSE);
  acl.Set("allow", ACL_ALLOW);
  acl.Set("deny", ACL_DENY);
  acl.Set("rrlExempt", ACL_RRL_EXEMPT);
  acl.Set("refine", ACL_REFINE);
  acl.Set("table16Entries", ACL16_ENTRIES);
  acl.Set("table16Stride", ACL16_STRIDE);
  acl.Set("max", HEIMDALL_ACL_MAX);
  l.Set("ACL", acl);
  l.Set("LOCAL_MAX", HEIMDALL_LOCAL_MAX);
  l.Set("LOCAL_SIZE", sizeof(heimdall_local));
  Napi::Object guarded = Napi::Object::New(env);
#define HEIMDALL_GUARD_JS(p, name) guarded.Set(#p, name);
  HEIMDALL_GUARDED_PORTS(HEIMDALL_GUARD_JS)
#undef HEIMDALL_GUARD_JS
  l.Set("guardedPorts", guarded);

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
  FIELD(val, hot_value, rrl_token);
  FIELD(val, hot_value, name);
  FIELD(val, hot_value, ttl_off);
  FIELD(val, hot_value, records);
  l.Set("value", val);

  // The small class: the same head (offsets as in value), its own name, offsets and records.
  Napi::Object small = Napi::Object::New(env);
  small.Set("size", sizeof(hot_small));
  FIELD(small, hot_small, name);
  FIELD(small, hot_small, ttl_off);
  FIELD(small, hot_small, records);
  l.Set("small", small);

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
  maps.Set("hotSlots", HEIMDALL_MAP_HOT_SLOTS);
  maps.Set("hits", HEIMDALL_MAP_HITS);
  maps.Set("stats", HEIMDALL_MAP_STATS);
  maps.Set("xsks", HEIMDALL_MAP_XSKS);
  maps.Set("runtime", HEIMDALL_MAP_RUNTIME);
  maps.Set("acl4", HEIMDALL_MAP_ACL4);
  maps.Set("acl6", HEIMDALL_MAP_ACL6);
  maps.Set("local", HEIMDALL_MAP_LOCAL);
  maps.Set("acl16", HEIMDALL_MAP_ACL16);
  maps.Set("rrl", HEIMDALL_MAP_RRL);
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

// mapRegion(fd, bytes) -> ArrayBuffer over a BPF_F_MMAPABLE map of this process (the
// rate limiter's buckets), shared with the XDP program; unmapped when collected. Any
// thread may map it: worker threads get the fd number, which is valid process-wide.
Napi::Value MapRegionJs(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!info[0].IsNumber() || !info[1].IsNumber()) throw Napi::TypeError::New(env, "mapRegion(fd, bytes)");
  int fd = info[0].As<Napi::Number>().Int32Value();
  double bytes = info[1].As<Napi::Number>().DoubleValue();
  if (fd < 0 || !(bytes >= 1 && bytes <= (1ull << 32))) throw Napi::RangeError::New(env, "mapRegion: bad fd or size");
  size_t page = static_cast<size_t>(getpagesize());
  size_t len = (static_cast<size_t>(bytes) + page - 1) & ~(page - 1);
  void *mem = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (mem == MAP_FAILED) {
    int e = errno;
    ThrowErrno(env, e, "mmap", "cannot map the BPF map");
  }
  return Napi::ArrayBuffer::New(env, mem, static_cast<size_t>(bytes), [len](Napi::Env, void *data) { munmap(data, len); });
}


// setAffinity(tid, cpus): the CPUs one thread of this process may run on (sched_setaffinity;
// tid 0 is the calling thread). The service pins each of its threads this way (--cpus):
// Node has no call for it, and threads created later inherit their creator's set.
Napi::Value SetAffinityJs(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!info[0].IsNumber() || !info[1].IsArray()) throw Napi::TypeError::New(env, "setAffinity(tid, cpus)");
  int tid = info[0].As<Napi::Number>().Int32Value();
  Napi::Array list = info[1].As<Napi::Array>();
  const int max_cpus = 4096;
  if (tid < 0 || list.Length() == 0) throw Napi::RangeError::New(env, "setAffinity: a thread id >= 0 and at least one CPU");
  // The numbers first: reading the array may throw, and nothing is allocated yet.
  std::vector<int> cpus;
  for (uint32_t i = 0; i < list.Length(); i++) {
    Napi::Value v = list.Get(i);
    int cpu = v.IsNumber() ? v.As<Napi::Number>().Int32Value() : -1;
    if (cpu < 0 || cpu >= max_cpus) throw Napi::RangeError::New(env, "setAffinity: CPU numbers are 0..4095");
    cpus.push_back(cpu);
  }
  cpu_set_t *set = CPU_ALLOC(max_cpus);
  if (set == nullptr) ThrowErrno(env, ENOMEM, "sched_setaffinity", "cannot set the CPUs of a thread");
  size_t size = CPU_ALLOC_SIZE(max_cpus);
  CPU_ZERO_S(size, set);
  for (int cpu : cpus) CPU_SET_S(cpu, size, set);
  int rc = sched_setaffinity(tid, size, set);
  int e = errno;
  CPU_FREE(set);
  if (rc != 0) ThrowErrno(env, e, "sched_setaffinity", "cannot set the CPUs of thread " + std::to_string(tid));
  return env.Undefined();
}

// socketDrops(fd) -> what the kernel dropped for one socket of this process (sk_drops, as
// SO_MEMINFO reports it). For a TCP listener that is every connection refused because
// its accept queue was full (tcp_listendrop); the netns-wide ListenOverflows counts
// every listener at once. Node has no getsockopt.
Napi::Value SocketDropsJs(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!info[0].IsNumber()) throw Napi::TypeError::New(env, "socketDrops(fd)");
  int fd = info[0].As<Napi::Number>().Int32Value();
  uint32_t mem[SK_MEMINFO_VARS] = {};
  socklen_t len = sizeof(mem);
  if (fd < 0 || getsockopt(fd, SOL_SOCKET, SO_MEMINFO, mem, &len) != 0) {
    int e = fd < 0 ? EBADF : errno;
    ThrowErrno(env, e, "getsockopt", "cannot read the socket's drop count");
  }
  if (len <= SK_MEMINFO_DROPS * sizeof(uint32_t)) ThrowErrno(env, ENOTSUP, "getsockopt", "the kernel reports no drop count");
  return Napi::Number::New(env, mem[SK_MEMINFO_DROPS]);
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
  exports.Set("dispatcherUnavailable", Napi::Function::New(env, DispatcherUnavailableJs));
  exports.Set("testRun", Napi::Function::New(env, TestRunJs));
  exports.Set("benchRun", Napi::Function::New(env, BenchRunJs));
  exports.Set("mapRegion", Napi::Function::New(env, MapRegionJs));
  exports.Set("setAffinity", Napi::Function::New(env, SetAffinityJs));
  exports.Set("socketDrops", Napi::Function::New(env, SocketDropsJs));
  return exports;
}

}  // namespace heimdall

static Napi::Object Init(Napi::Env env, Napi::Object exports) { return heimdall::InitModule(env, exports); }
NODE_API_MODULE(heimdall, Init)
