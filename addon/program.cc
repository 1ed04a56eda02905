// SPDX-License-Identifier: MIT
// program.cc: open, configure, load and attach the heimdall XDP object; hot map,
// counters and BPF_PROG_TEST_RUN. Argument types are checked by the TypeScript layer;
// the checks here are the cheap last line that keeps bad input out of the kernel.
#include "program.h"

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <linux/if_link.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "errors.h"
#include "heimdall.h"
#include "xdp_attach.h"

namespace heimdall {

namespace {

struct ConfigSlot {
  bpf_map *rodata;
  size_t offset;
  size_t size;
};

// Finds the `const volatile` config struct in the object's .rodata through BTF, so the
// loader writes it by name, never at a guessed offset.
bool FindConfig(bpf_object *obj, ConfigSlot *slot) {
  const struct btf *btf = bpf_object__btf(obj);
  if (!btf) return false;
  bpf_map *rodata = nullptr;
  bpf_map *m;
  bpf_object__for_each_map(m, obj) {
    const char *name = bpf_map__name(m);
    size_t n = strlen(name);
    if (bpf_map__is_internal(m) && n >= 7 && strcmp(name + n - 7, ".rodata") == 0) rodata = m;
  }
  if (!rodata) return false;
  int sec_id = btf__find_by_name_kind(btf, ".rodata", BTF_KIND_DATASEC);
  if (sec_id < 0) return false;
  const struct btf_type *sec = btf__type_by_id(btf, sec_id);
  const struct btf_var_secinfo *vs = btf_var_secinfos(sec);
  for (int i = 0; i < btf_vlen(sec); i++, vs++) {
    const struct btf_type *var = btf__type_by_id(btf, vs->type);
    const char *name = btf__name_by_offset(btf, var->name_off);
    if (name && strcmp(name, HEIMDALL_CONFIG_VAR) == 0) {
      size_t size = 0;
      if (!bpf_map__initial_value(rodata, &size) || vs->offset + vs->size > size) return false;
      slot->rodata = rodata;
      slot->offset = vs->offset;
      slot->size = vs->size;
      return true;
    }
  }
  return false;
}

int MapFd(Napi::Env env, bpf_object *obj, const char *name) {
  int fd = bpf_object__find_map_fd_by_name(obj, name);
  if (fd < 0) ThrowErrno(env, fd, "bpf_object__find_map_fd_by_name", std::string("map ") + name + " missing from the BPF object");
  return fd;
}

void CheckBuffer(Napi::Env env, const Napi::Value &v, size_t want, const char *what) {
  if (!v.IsBuffer()) throw Napi::TypeError::New(env, std::string(what) + " must be a Buffer");
  size_t len = v.As<Napi::Buffer<uint8_t>>().Length();
  if (len != want)
    throw Napi::RangeError::New(env, std::string(what) + " must be " + std::to_string(want) + " bytes, got " + std::to_string(len));
}

}  // namespace

Napi::Function XdpProgram::Init(Napi::Env env) {
  return DefineClass(env, "XdpProgram",
                     {
                         InstanceMethod("attach", &XdpProgram::Attach),
                         InstanceMethod("detach", &XdpProgram::Detach),
                         InstanceMethod("hotPut", &XdpProgram::HotPut),
                         InstanceMethod("hotDelete", &XdpProgram::HotDelete),
                         InstanceMethod("hotGet", &XdpProgram::HotGet),
                         InstanceMethod("hotKeys", &XdpProgram::HotKeys),
                         InstanceMethod("hitsRead", &XdpProgram::HitsRead),
                         InstanceMethod("hitsReset", &XdpProgram::HitsReset),
                         InstanceMethod("hitsReadAll", &XdpProgram::HitsReadAll),
                         InstanceMethod("stats", &XdpProgram::Stats),
                         InstanceMethod("statsReset", &XdpProgram::StatsReset),
                         InstanceMethod("setRuntime", &XdpProgram::SetRuntime),
                         InstanceMethod("testRun", &XdpProgram::TestRun),
                         InstanceMethod("benchRun", &XdpProgram::BenchRun),
                         InstanceMethod("close", &XdpProgram::Close),
                         InstanceMethod("describe", &XdpProgram::Describe),
                     });
}

// new XdpProgram(objectPath, { ports: number[], udpSize: number, hotEntries: number })
XdpProgram::XdpProgram(const Napi::CallbackInfo &info) : Napi::ObjectWrap<XdpProgram>(info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsObject())
    throw Napi::TypeError::New(env, "XdpProgram(path, options)");
  std::string path = info[0].As<Napi::String>();
  Napi::Object opts = info[1].As<Napi::Object>();
  Napi::Array ports = opts.Get("ports").As<Napi::Array>();
  uint32_t udp_size = opts.Get("udpSize").As<Napi::Number>().Uint32Value();
  uint32_t hot_entries = opts.Get("hotEntries").As<Napi::Number>().Uint32Value();
  if (ports.Length() < 1 || ports.Length() > HEIMDALL_MAX_PORTS)
    throw Napi::RangeError::New(env, "between 1 and " + std::to_string(HEIMDALL_MAX_PORTS) + " ports");
  if (udp_size < 512 || udp_size > 65535) throw Napi::RangeError::New(env, "udpSize must be 512..65535");
  if (hot_entries < 1) throw Napi::RangeError::New(env, "hotEntries must be at least 1");

  ResetLibbpfLog();
  if (access(path.c_str(), R_OK) != 0)
    ThrowErrno(env, errno, "access", "BPF object " + path + " cannot be read; run 'npm run build'");
  obj_ = bpf_object__open_file(path.c_str(), nullptr);
  if (!obj_) {
    int err = errno;
    ThrowErrno(env, err, "bpf_object__open_file", "cannot open BPF object " + path);
  }
  ConfigSlot cfg;
  if (!FindConfig(obj_, &cfg) || cfg.size != sizeof(heimdall_config)) {
    Release();
    ThrowErrno(env, EINVAL, "btf__find_by_name_kind", "BPF object " + path + " has no " HEIMDALL_CONFIG_VAR " of the expected size; rebuild it");
  }
  heimdall_config c = {};
  for (uint32_t i = 0; i < ports.Length(); i++) {
    uint32_t p = ports.Get(i).As<Napi::Number>().Uint32Value();
    if (p < 1 || p > 65535) {
      Release();
      throw Napi::RangeError::New(env, "port out of range: " + std::to_string(p));
    }
    c.ports[i] = htons(static_cast<uint16_t>(p));
  }
  c.udp_size = static_cast<uint16_t>(udp_size);
  // The hot key's name hash is seeded per load, so which names collide cannot be worked
  // out in advance (a collision only sends both names to userspace; see heimdall.h).
  if (getrandom(&c.hash_seed, sizeof(c.hash_seed), 0) != sizeof(c.hash_seed)) {
    int e = errno;
    Release();
    ThrowErrno(env, e, "getrandom", "cannot seed the hot key hash");
  }
  hash_seed_ = c.hash_seed;
  ncpus_ = libbpf_num_possible_cpus();
  if (ncpus_ < 1) ncpus_ = 1;
  if (static_cast<uint64_t>(hot_entries) * ncpus_ > UINT32_MAX / 8) {
    Release();
    throw Napi::RangeError::New(env, "a hot map of " + std::to_string(hot_entries) + " entries is too large for per-CPU hit counters on " +
                                         std::to_string(ncpus_) + " CPUs (at most " + std::to_string(UINT32_MAX / 8 / ncpus_) + "); lower --hot-size");
  }
  c.hot_capacity = hot_entries;
  size_t rosize = 0;
  const void *ro = bpf_map__initial_value(cfg.rodata, &rosize);
  std::vector<uint8_t> image(static_cast<const uint8_t *>(ro), static_cast<const uint8_t *>(ro) + rosize);
  memcpy(image.data() + cfg.offset, &c, sizeof(c));
  if (int e = bpf_map__set_initial_value(cfg.rodata, image.data(), image.size())) {
    Release();
    ThrowErrno(env, e, "bpf_map__set_initial_value", "cannot set the load-time settings");
  }

  bpf_map *hot = bpf_object__find_map_by_name(obj_, HEIMDALL_MAP_HOT);
  bpf_map *hits = bpf_object__find_map_by_name(obj_, HEIMDALL_MAP_HITS);
  if (!hot || !hits) {
    Release();
    ThrowErrno(env, ENOENT, "bpf_object__find_map_by_name", "BPF object " + path + " lacks the hot maps; rebuild it");
  }
  bpf_map__set_max_entries(hot, hot_entries);
  bpf_map__set_max_entries(hits, hot_entries * static_cast<uint32_t>(ncpus_));
  hot_capacity_ = hot_entries;

  // The verifier gives up with EAGAIN when a signal is pending, and libbpf retries only a
  // few times: a thread that gets signals often (node --cpu-prof's SIGPROF every
  // millisecond) could never load the program. Signals wait until the load is done.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old);
  int err = bpf_object__load(obj_);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (err) {
    std::string log = LibbpfLog();
    Release();
    ThrowErrno(env, err, "bpf_object__load", "cannot load the XDP program");
  }
  bpf_program *prog = bpf_object__find_program_by_name(obj_, HEIMDALL_PROG_NAME);
  if (!prog) {
    Release();
    ThrowErrno(env, ENOENT, "bpf_object__find_program_by_name", "program " HEIMDALL_PROG_NAME " missing from " + path);
  }
  prog_fd_ = bpf_program__fd(prog);
  bpf_prog_info pinfo = {};
  uint32_t plen = sizeof(pinfo);
  if (bpf_obj_get_info_by_fd(prog_fd_, &pinfo, &plen) == 0) prog_id_ = pinfo.id;
  hot_fd_ = MapFd(env, obj_, HEIMDALL_MAP_HOT);
  hits_fd_ = MapFd(env, obj_, HEIMDALL_MAP_HITS);
  stats_fd_ = MapFd(env, obj_, HEIMDALL_MAP_STATS);
  xsks_fd_ = MapFd(env, obj_, HEIMDALL_MAP_XSKS);
  runtime_fd_ = MapFd(env, obj_, HEIMDALL_MAP_RUNTIME);
  // The hit counters, mapped: read and reset with plain loads and stores.
  hits_len_ = (static_cast<size_t>(hot_capacity_) * ncpus_ * sizeof(uint64_t) + getpagesize() - 1) & ~(static_cast<size_t>(getpagesize()) - 1);
  void *mem = mmap(nullptr, hits_len_, PROT_READ | PROT_WRITE, MAP_SHARED, hits_fd_, 0);
  if (mem == MAP_FAILED) {
    int e = errno;
    hits_len_ = 0;
    Release();
    ThrowErrno(env, e, "mmap", "cannot map the hit counters");
  }
  hits_ = static_cast<volatile uint64_t *>(mem);
}

XdpProgram::~XdpProgram() { Release(); }

// Closing the object unloads the program unless it is attached: an attached program
// keeps running (and falls back to the kernel for what it cannot answer) until detached.
void XdpProgram::Release() {
  if (hits_) munmap(const_cast<uint64_t *>(hits_), hits_len_);
  hits_ = nullptr;
  hits_len_ = 0;
  if (obj_) bpf_object__close(obj_);
  obj_ = nullptr;
  prog_fd_ = hot_fd_ = hits_fd_ = stats_fd_ = xsks_fd_ = runtime_fd_ = -1;
}

void XdpProgram::EnsureOpen(Napi::Env env) const {
  if (!obj_) throw Napi::Error::New(env, "XdpProgram is closed");
}

// attach(ifname, mode: 'native'|'generic'|'auto', force: boolean)
Napi::Value XdpProgram::Attach(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  EnsureOpen(env);
  std::string ifname = info[0].As<Napi::String>();
  std::string mode = info[1].As<Napi::String>();
  bool force = info[2].ToBoolean();
  AttachResult r = AttachXdp(env, ifname, prog_fd_, prog_id_, mode, force);
  ifindex_ = r.ifindex;
  attach_mode_flags_ = r.mode_flags;
  Napi::Object out = Napi::Object::New(env);
  out.Set("ifindex", r.ifindex);
  out.Set("mode", r.mode_flags == XDP_FLAGS_SKB_MODE ? "generic" : "native");
  if (r.replaced_id) {
    Napi::Object rep = Napi::Object::New(env);
    rep.Set("id", r.replaced_id);
    rep.Set("name", r.replaced_name);
    out.Set("replaced", rep);
  } else {
    out.Set("replaced", env.Null());
  }
  return out;
}

// detach(): removes this program from the interface it was attached to, only if it is
// still the one attached there. Returns whether it removed it.
Napi::Value XdpProgram::Detach(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!obj_ || ifindex_ == 0) return Napi::Boolean::New(env, false);
  bool removed = DetachXdp(env, ifindex_, attach_mode_flags_, prog_fd_);
  ifindex_ = 0;
  attach_mode_flags_ = 0;
  return Napi::Boolean::New(env, removed);
}

// hotPut(key, value): writes one hot entry after checking the fields the program trusts.
Napi::Value XdpProgram::HotPut(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  EnsureOpen(env);
  CheckBuffer(env, info[0], sizeof(hot_key), "key");
  CheckBuffer(env, info[1], sizeof(hot_value), "value");
  auto *k = reinterpret_cast<const hot_key *>(info[0].As<Napi::Buffer<uint8_t>>().Data());
  auto *v = reinterpret_cast<const hot_value *>(info[1].As<Napi::Buffer<uint8_t>>().Data());
  if (k->name_len < 1 || k->name_len > HOT_NAME_MAX) throw Napi::RangeError::New(env, "key name_len out of range");
  if (v->records_len > HOT_RECORDS_MAX || v->rr_count > HOT_RR_MAX)
    throw Napi::RangeError::New(env, "value records_len or rr_count out of range");
  if (v->hit_slot >= hot_capacity_) throw Napi::RangeError::New(env, "value hit_slot beyond the hot map capacity");
  for (uint32_t i = 0; i < v->rr_count; i++)
    if (v->ttl_off[i] + 4u > v->records_len) throw Napi::RangeError::New(env, "value ttl_off beyond records_len");
  if (bpf_map_update_elem(hot_fd_, k, v, BPF_ANY) != 0)
    ThrowErrno(env, errno, "bpf_map_update_elem", errno == E2BIG ? "hot map is full" : "cannot write hot entry");
  return env.Undefined();
}

Napi::Value XdpProgram::HotDelete(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  EnsureOpen(env);
  CheckBuffer(env, info[0], sizeof(hot_key), "key");
  if (bpf_map_delete_elem(hot_fd_, info[0].As<Napi::Buffer<uint8_t>>().Data()) != 0) {
    if (errno == ENOENT) return Napi::Boolean::New(env, false);
    ThrowErrno(env, errno, "bpf_map_delete_elem", "cannot delete hot entry");
  }
  return Napi::Boolean::New(env, true);
}

Napi::Value XdpProgram::HotGet(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  EnsureOpen(env);
  CheckBuffer(env, info[0], sizeof(hot_key), "key");
  auto out = Napi::Buffer<uint8_t>::New(env, sizeof(hot_value));
  if (bpf_map_lookup_elem(hot_fd_, info[0].As<Napi::Buffer<uint8_t>>().Data(), out.Data()) != 0) {
    if (errno == ENOENT) return env.Null();
    ThrowErrno(env, errno, "bpf_map_lookup_elem", "cannot read hot entry");
  }
  return out;
}

// hotKeys(): every key in the hot map, as Buffers.
Napi::Value XdpProgram::HotKeys(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  EnsureOpen(env);
  std::vector<hot_key> keys;
  hot_key cur, next;
  const void *prev = nullptr;
  while (bpf_map_get_next_key(hot_fd_, prev, &next) == 0) {
    keys.push_back(next);
    cur = next;
    prev = &cur;
    if (keys.size() > hot_capacity_) break;  // concurrent deletes can restart the walk
  }
  Napi::Array arr = Napi::Array::New(env, keys.size());
  for (size_t i = 0; i < keys.size(); i++)
    arr.Set(i, Napi::Buffer<uint8_t>::Copy(env, reinterpret_cast<uint8_t *>(&keys[i]), sizeof(hot_key)));
  return arr;
}

// hitsRead(slot): the per-entry hit counter summed over CPUs, as a BigInt.
Napi::Value XdpProgram::HitsRead(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  EnsureOpen(env);
  uint32_t slot = info[0].As<Napi::Number>().Uint32Value();
  if (slot >= hot_capacity_) throw Napi::RangeError::New(env, "hit slot out of range");
  return Napi::BigInt::New(env, SlotHits(slot));
}

uint64_t XdpProgram::SlotHits(uint32_t slot) const {
  uint64_t sum = 0;
  for (int c = 0; c < ncpus_; c++) sum += hits_[static_cast<size_t>(c) * hot_capacity_ + slot];
  return sum;
}

// hitsReadAll(out: Float64Array): every slot's hit counter, summed over CPUs, into
// out[slot]; loads from the mapped counters, no syscall. Returns the slots read.
Napi::Value XdpProgram::HitsReadAll(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  EnsureOpen(env);
  if (info.Length() < 1 || !info[0].IsTypedArray() ||
      info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array)
    throw Napi::TypeError::New(env, "hitsReadAll(out: Float64Array)");
  Napi::Float64Array out = info[0].As<Napi::Float64Array>();
  if (out.ElementLength() < hot_capacity_) throw Napi::RangeError::New(env, "out is shorter than the hot map");
  for (uint32_t slot = 0; slot < hot_capacity_; slot++) out[slot] = static_cast<double>(SlotHits(slot));
  return Napi::Number::New(env, hot_capacity_);
}

Napi::Value XdpProgram::HitsReset(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  EnsureOpen(env);
  uint32_t slot = info[0].As<Napi::Number>().Uint32Value();
  if (slot >= hot_capacity_) throw Napi::RangeError::New(env, "hit slot out of range");
  for (int c = 0; c < ncpus_; c++) hits_[static_cast<size_t>(c) * hot_capacity_ + slot] = 0;
  return env.Undefined();
}

// stats(): BigUint64Array of the outcome counters summed over CPUs, index = enum heimdall_stat.
Napi::Value XdpProgram::Stats(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  EnsureOpen(env);
  uint32_t zero = 0;
  std::vector<heimdall_stats> per(ncpus_);
  if (bpf_map_lookup_elem(stats_fd_, &zero, per.data()) != 0)
    ThrowErrno(env, errno, "bpf_map_lookup_elem", "cannot read counters");
  auto arr = Napi::BigUint64Array::New(env, STAT_MAX);
  for (int s = 0; s < STAT_MAX; s++) {
    uint64_t sum = 0;
    for (const auto &c : per) sum += c.slot[s];
    arr[s] = sum;
  }
  return arr;
}

Napi::Value XdpProgram::StatsReset(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  EnsureOpen(env);
  uint32_t zero = 0;
  std::vector<heimdall_stats> per(ncpus_);
  memset(per.data(), 0, per.size() * sizeof(heimdall_stats));
  if (bpf_map_update_elem(stats_fd_, &zero, per.data(), BPF_ANY) != 0)
    ThrowErrno(env, errno, "bpf_map_update_elem", "cannot reset counters");
  return env.Undefined();
}

// setRuntime({ answersOff: boolean })
Napi::Value XdpProgram::SetRuntime(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  EnsureOpen(env);
  Napi::Object o = info[0].As<Napi::Object>();
  heimdall_runtime rt = {};
  rt.answers_off = o.Get("answersOff").ToBoolean() ? 1 : 0;
  uint32_t zero = 0;
  if (bpf_map_update_elem(runtime_fd_, &zero, &rt, BPF_ANY) != 0)
    ThrowErrno(env, errno, "bpf_map_update_elem", "cannot write runtime settings");
  return env.Undefined();
}

// testRun(frame, repeat): BPF_PROG_TEST_RUN; returns { action, frame, durationNs }.
Napi::Value XdpProgram::TestRun(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  EnsureOpen(env);
  if (!info[0].IsBuffer()) throw Napi::TypeError::New(env, "frame must be a Buffer");
  auto in = info[0].As<Napi::Buffer<uint8_t>>();
  uint32_t repeat = info.Length() > 1 ? info[1].As<Napi::Number>().Uint32Value() : 1;
  std::vector<uint8_t> out(in.Length() + 4096);
  LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = in.Data(), .data_out = out.data(), .data_size_in = static_cast<uint32_t>(in.Length()),
              .data_size_out = static_cast<uint32_t>(out.size()), .repeat = static_cast<int>(repeat ? repeat : 1));
  if (bpf_prog_test_run_opts(prog_fd_, &o) != 0) ThrowErrno(env, errno, "bpf_prog_test_run_opts", "test run failed");
  Napi::Object res = Napi::Object::New(env);
  res.Set("action", o.retval);
  res.Set("frame", Napi::Buffer<uint8_t>::Copy(env, out.data(), o.data_size_out));
  res.Set("durationNs", o.duration);
  return res;
}

// benchRun(frame, iterations): runs the program once per test run, `iterations` times,
// each on a fresh copy of the frame (a reply rewrites it, so repeat would measure the
// second pass over a reply). Returns the kernel's own mean time per run.
Napi::Value XdpProgram::BenchRun(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  EnsureOpen(env);
  if (!info[0].IsBuffer()) throw Napi::TypeError::New(env, "frame must be a Buffer");
  auto in = info[0].As<Napi::Buffer<uint8_t>>();
  uint32_t iterations = info[1].As<Napi::Number>().Uint32Value();
  std::vector<uint8_t> out(in.Length() + 4096);
  uint64_t total = 0;
  uint32_t retval = 0;
  for (uint32_t i = 0; i < iterations; i++) {
    LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = in.Data(), .data_out = out.data(), .data_size_in = static_cast<uint32_t>(in.Length()),
                .data_size_out = static_cast<uint32_t>(out.size()), .repeat = 1);
    if (bpf_prog_test_run_opts(prog_fd_, &o) != 0) ThrowErrno(env, errno, "bpf_prog_test_run_opts", "test run failed");
    total += o.duration;
    retval = o.retval;
  }
  Napi::Object res = Napi::Object::New(env);
  res.Set("action", retval);
  res.Set("meanNs", iterations ? static_cast<double>(total) / iterations : 0.0);
  return res;
}

Napi::Value XdpProgram::Close(const Napi::CallbackInfo &info) {
  Release();
  return info.Env().Undefined();
}

Napi::Value XdpProgram::Describe(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("open", obj_ != nullptr);
  o.Set("progId", prog_id_);
  o.Set("ifindex", ifindex_);
  o.Set("hotCapacity", hot_capacity_);
  o.Set("xsksMapFd", xsks_fd_);
  o.Set("cpus", ncpus_);
  o.Set("hashSeed", Napi::BigInt::New(env, static_cast<uint64_t>(hash_seed_)));
  return o;
}

}  // namespace heimdall
