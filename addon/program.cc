// SPDX-License-Identifier: MIT
// program.cc: open, configure, load and attach the heimdall XDP object; hot map and
// counters. The TypeScript layer validates arguments for the operator; the checks here
// (args.h) are the last line that keeps a wrong type from becoming a crash and bad
// input out of the kernel.
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
#include <xdp/libxdp.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "args.h"
#include "errors.h"
#include "heimdall.h"
#include "dispatcher.h"
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

// bpf_object__find_map_fd_by_name() reports a missing map as EINVAL, the errno of a null
// map: the two steps apart tell a map the object lacks from one without an fd.
int MapFd(Napi::Env env, bpf_object *obj, const char *name) {
  const bpf_map *map = bpf_object__find_map_by_name(obj, name);
  if (!map) ThrowErrno(env, ENOENT, "bpf_object__find_map_by_name", std::string("map ") + name + " missing from the BPF object; rebuild it");
  int fd = bpf_map__fd(map);
  if (fd < 0) ThrowErrno(env, fd, "bpf_map__fd", std::string("map ") + name + " has no fd after the load");
  return fd;
}

}  // namespace

void BpfObjectClose::operator()(bpf_object *obj) const noexcept { bpf_object__close(obj); }
void XdpProgramClose::operator()(xdp_program *prog) const noexcept { xdp_program__close(prog); }

MappedRegion::MappedRegion(MappedRegion &&other) noexcept : addr_(other.addr_), len_(other.len_) {
  other.addr_ = nullptr;
  other.len_ = 0;
}

MappedRegion &MappedRegion::operator=(MappedRegion &&other) noexcept {
  if (this != &other) {
    reset();
    addr_ = other.addr_;
    len_ = other.len_;
    other.addr_ = nullptr;
    other.len_ = 0;
  }
  return *this;
}

void MappedRegion::reset() noexcept {
  if (addr_) munmap(addr_, len_);
  addr_ = nullptr;
  len_ = 0;
}

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
                         InstanceMethod("edgePut", &XdpProgram::EdgePut),
                         InstanceMethod("edgeDelete", &XdpProgram::EdgeDelete),
                         InstanceMethod("edgeKeys", &XdpProgram::EdgeKeys),
                         InstanceMethod("close", &XdpProgram::Close),
                         InstanceMethod("describe", &XdpProgram::Describe),
                     });
}

// new XdpProgram(objectPath, { ports: number[], udpSize: number, hotEntries: number, rrlBuckets: number })
//
// A constructor that throws never runs ~XdpProgram. So every resource is held by an
// owning local (BpfObjectPtr, MappedRegion) that frees it on any throw, and the members
// are assigned only after the last step that can fail: there is no partly built
// XdpProgram to clean up, and no throw needs a Release() before it.
XdpProgram::XdpProgram(const Napi::CallbackInfo &info) : Napi::ObjectWrap<XdpProgram>(info) {
  Napi::Env env = info.Env();
  std::string path = ArgString(info, 0, "objectPath");
  Napi::Object opts = ArgObject(info, 1, "options");
  Napi::Array ports = PropArray(opts, "ports");
  if (ports.Length() < 1 || ports.Length() > HEIMDALL_MAX_PORTS)
    throw Napi::RangeError::New(env, "options.ports must hold between 1 and " + std::to_string(HEIMDALL_MAX_PORTS) + " ports");
  heimdall_config c = {};
  for (uint32_t i = 0; i < ports.Length(); i++) {
    std::string what = "options.ports[" + std::to_string(i) + "]";
    c.ports[i] = htons(static_cast<uint16_t>(ValueUint32(env, ports.Get(i), what.c_str(), 1, 65535)));
  }
  c.udp_size = static_cast<uint16_t>(PropUint32(opts, "udpSize", 512, 65535));
  uint32_t hot_entries = PropUint32(opts, "hotEntries", 1);
  uint32_t rrl_buckets = PropUint32(opts, "rrlBuckets", 1, 1u << 26);
  if (rrl_buckets & (rrl_buckets - 1)) throw Napi::RangeError::New(env, "options.rrlBuckets must be a power of two");

  ResetLibbpfLog();
  // Every per-CPU buffer is sized by this count (here and in Stats): a guessed one could
  // be overrun by the kernel.
  int ncpus = libbpf_num_possible_cpus();
  if (ncpus < 1) ThrowErrno(env, ncpus < 0 ? ncpus : EINVAL, "libbpf_num_possible_cpus", "cannot count the possible CPUs");
  if (static_cast<uint64_t>(hot_entries) * ncpus > UINT32_MAX / 8)
    throw Napi::RangeError::New(env, "a hot map of " + std::to_string(hot_entries) + " entries is too large for per-CPU hit counters on " +
                                         std::to_string(ncpus) + " CPUs (at most " + std::to_string(UINT32_MAX / 8 / ncpus) + "); lower --hot-size");
  c.hot_capacity = hot_entries;
  // The small entries' table: the power of two at or above the capacity. A window of
  // HOT_SLOT_PROBE slots that is full sends its answer to hot_map (14 % of 30,000 answers
  // in 32,768 slots, 5 % of 10,000 in 16,384); twice the slots would make that 2 %, but
  // a table twice the size cost a hit more than the overflow saved (docs/BENCHMARKS.md,
  // "A table indexed by the name's hash").
  uint64_t want_slots = hot_entries;
  uint64_t slots = HOT_SLOT_PROBE;
  while (slots < want_slots) slots <<= 1;
  if (slots * sizeof(hot_slot) > (1ull << 34))
    throw Napi::RangeError::New(env, "a hot map of " + std::to_string(hot_entries) + " entries is too large for its table of small entries; lower --hot-size");
  c.hot_slot_mask = static_cast<uint32_t>(slots - 1);
  // The hot key's name hash is seeded per load, so which names collide cannot be worked
  // out in advance (a collision only sends both names to userspace; see heimdall.h).
  if (getrandom(&c.hash_seed, sizeof(c.hash_seed), 0) != sizeof(c.hash_seed)) {
    int e = errno;
    ThrowErrno(env, e, "getrandom", "cannot seed the hot key hash");
  }
  // The same for the rate limiter's buckets: which clients share one cannot be planned.
  if (getrandom(&c.rrl_seed, sizeof(c.rrl_seed), 0) != sizeof(c.rrl_seed)) {
    int e = errno;
    ThrowErrno(env, e, "getrandom", "cannot seed the rate limiter's hash");
  }
  c.rrl_mask = rrl_buckets - 1;

  if (access(path.c_str(), R_OK) != 0) {
    int e = errno;
    ThrowErrno(env, e, "access", "BPF object " + path + " cannot be read; run 'npm run build'");
  }
  BpfObjectPtr obj(bpf_object__open_file(path.c_str(), nullptr));
  if (!obj) {
    int e = errno;
    ThrowErrno(env, e, "bpf_object__open_file", "cannot open BPF object " + path);
  }
  ConfigSlot cfg;
  if (!FindConfig(obj.get(), &cfg) || cfg.size != sizeof(heimdall_config))
    ThrowErrno(env, EINVAL, "btf__find_by_name_kind", "BPF object " + path + " has no " HEIMDALL_CONFIG_VAR " of the expected size; rebuild it");
  size_t rosize = 0;
  const void *ro = bpf_map__initial_value(cfg.rodata, &rosize);
  std::vector<uint8_t> image(static_cast<const uint8_t *>(ro), static_cast<const uint8_t *>(ro) + rosize);
  memcpy(image.data() + cfg.offset, &c, sizeof(c));
  if (int e = bpf_map__set_initial_value(cfg.rodata, image.data(), image.size()))
    ThrowErrno(env, e, "bpf_map__set_initial_value", "cannot set the load-time settings");

  bpf_map *hot = bpf_object__find_map_by_name(obj.get(), HEIMDALL_MAP_HOT);
  bpf_map *hot_slots = bpf_object__find_map_by_name(obj.get(), HEIMDALL_MAP_HOT_SLOTS);
  bpf_map *hits = bpf_object__find_map_by_name(obj.get(), HEIMDALL_MAP_HITS);
  if (!hot || !hot_slots || !hits) ThrowErrno(env, ENOENT, "bpf_object__find_map_by_name", "BPF object " + path + " lacks the hot maps; rebuild it");
  // Each class can hold the whole capacity: which answers are small is up to the traffic.
  if (int e = bpf_map__set_max_entries(hot, hot_entries)) ThrowErrno(env, e, "bpf_map__set_max_entries", "cannot size " HEIMDALL_MAP_HOT);
  if (int e = bpf_map__set_max_entries(hot_slots, static_cast<uint32_t>(slots)))
    ThrowErrno(env, e, "bpf_map__set_max_entries", "cannot size " HEIMDALL_MAP_HOT_SLOTS);
  if (int e = bpf_map__set_max_entries(hits, hot_entries * static_cast<uint32_t>(ncpus)))
    ThrowErrno(env, e, "bpf_map__set_max_entries", "cannot size " HEIMDALL_MAP_HITS);
  bpf_map *rrl = bpf_object__find_map_by_name(obj.get(), HEIMDALL_MAP_RRL);
  if (!rrl) ThrowErrno(env, ENOENT, "bpf_object__find_map_by_name", "BPF object " + path + " lacks the " HEIMDALL_MAP_RRL " map; rebuild it");
  if (int e = bpf_map__set_max_entries(rrl, rrl_buckets)) ThrowErrno(env, e, "bpf_map__set_max_entries", "cannot size " HEIMDALL_MAP_RRL);
  bpf_program *prog = bpf_object__find_program_by_name(obj.get(), HEIMDALL_PROG_NAME);
  if (!prog) ThrowErrno(env, ENOENT, "bpf_object__find_program_by_name", "program " HEIMDALL_PROG_NAME " missing from " + path);

  // The verifier gives up with EAGAIN when a signal is pending, and libbpf retries only a
  // few times: a thread that gets signals often (node --cpu-prof's SIGPROF every
  // millisecond) could never load the program. Signals wait until the load is done.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old);
  int err = bpf_object__load(obj.get());
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (err) ThrowErrno(env, err, "bpf_object__load", "cannot load the XDP program");

  int prog_fd = bpf_program__fd(prog);
  if (prog_fd < 0) ThrowErrno(env, prog_fd, "bpf_program__fd", "the loaded object has no fd for " HEIMDALL_PROG_NAME);
  bpf_prog_info pinfo = {};
  uint32_t plen = sizeof(pinfo);
  if (int e = bpf_obj_get_info_by_fd(prog_fd, &pinfo, &plen)) ThrowErrno(env, e, "bpf_obj_get_info_by_fd", "cannot read the loaded program's id");
  int hot_fd = MapFd(env, obj.get(), HEIMDALL_MAP_HOT);
  int hot_slots_fd = MapFd(env, obj.get(), HEIMDALL_MAP_HOT_SLOTS);
  int hits_fd = MapFd(env, obj.get(), HEIMDALL_MAP_HITS);
  int stats_fd = MapFd(env, obj.get(), HEIMDALL_MAP_STATS);
  int xsks_fd = MapFd(env, obj.get(), HEIMDALL_MAP_XSKS);
  int runtime_fd = MapFd(env, obj.get(), HEIMDALL_MAP_RUNTIME);
  int acl4_fd = MapFd(env, obj.get(), HEIMDALL_MAP_ACL4);
  int acl6_fd = MapFd(env, obj.get(), HEIMDALL_MAP_ACL6);
  int local_fd = MapFd(env, obj.get(), HEIMDALL_MAP_LOCAL);
  int acl16_fd = MapFd(env, obj.get(), HEIMDALL_MAP_ACL16);
  int rrl_fd = MapFd(env, obj.get(), HEIMDALL_MAP_RRL);
  // The hit counters, mapped: read and reset with plain loads and stores.
  size_t page = static_cast<size_t>(getpagesize());
  size_t hits_len = (static_cast<size_t>(hot_entries) * ncpus * sizeof(uint64_t) + page - 1) & ~(page - 1);
  void *mem = mmap(nullptr, hits_len, PROT_READ | PROT_WRITE, MAP_SHARED, hits_fd, 0);
  if (mem == MAP_FAILED) {
    int e = errno;
    ThrowErrno(env, e, "mmap", "cannot map the hit counters");
  }
  MappedRegion hits_map(mem, hits_len);
  // The small entries' table, mapped: written with plain stores under each slot's sequence.
  size_t slots_len = (static_cast<size_t>(slots) * sizeof(hot_slot) + page - 1) & ~(page - 1);
  void *smem = mmap(nullptr, slots_len, PROT_READ | PROT_WRITE, MAP_SHARED, hot_slots_fd, 0);
  if (smem == MAP_FAILED) {
    int e = errno;
    ThrowErrno(env, e, "mmap", "cannot map the table of small hot entries");
  }
  MappedRegion slots_map(smem, slots_len);

  std::string kept_path = path;

  // Nothing below can fail.
  path_ = std::move(kept_path);
  obj_ = std::move(obj);
  hits_ = std::move(hits_map);
  slots_ = std::move(slots_map);
  slot_mask_ = static_cast<uint32_t>(slots - 1);
  prog_fd_ = prog_fd;
  prog_id_ = pinfo.id;
  hot_fd_ = hot_fd;
  hot_slots_fd_ = hot_slots_fd;
  hits_fd_ = hits_fd;
  stats_fd_ = stats_fd;
  xsks_fd_ = xsks_fd;
  runtime_fd_ = runtime_fd;
  acl4_fd_ = acl4_fd;
  acl6_fd_ = acl6_fd;
  local_fd_ = local_fd;
  acl16_fd_ = acl16_fd;
  rrl_fd_ = rrl_fd;
  rrl_buckets_ = rrl_buckets;
  rrl_seed_ = c.rrl_seed;
  hot_capacity_ = hot_entries;
  ncpus_ = ncpus;
  hash_seed_ = c.hash_seed;
}

XdpProgram::~XdpProgram() = default;

// Closing the object unloads the program unless it is attached: an attached program
// keeps running (and falls back to the kernel for what it cannot answer) until detached.
void XdpProgram::Release() {
  ext_prog_.reset();
  ext_obj_.reset();
  hits_.reset();
  slots_.reset();
  obj_.reset();
  prog_fd_ = hot_fd_ = hot_slots_fd_ = hits_fd_ = stats_fd_ = xsks_fd_ = runtime_fd_ = -1;
  acl4_fd_ = acl6_fd_ = local_fd_ = acl16_fd_ = rrl_fd_ = -1;
}

void XdpProgram::EnsureOpen(Napi::Env env) const {
  if (!obj_) throw Napi::Error::New(env, "XdpProgram is closed");
}

// Loads the program again as an extension of libxdp's dispatcher, over this object's
// maps, and has libxdp attach it on ifindex (a new dispatcher, or the one there rebuilt
// with heimdall added in run-priority order). 0 or -errno.
int XdpProgram::AttachThroughDispatcher(int ifindex, uint32_t mode_flags, uint32_t *attached_id) {
  BpfObjectPtr ext(bpf_object__open_file(path_.c_str(), nullptr));
  if (!ext) return -errno;
  bpf_map *m;
  bpf_object__for_each_map(m, ext.get()) {
    const bpf_map *mine = bpf_object__find_map_by_name(obj_.get(), bpf_map__name(m));
    if (!mine || bpf_map__fd(mine) < 0) return -ENOENT;
    if (int e = bpf_map__reuse_fd(m, bpf_map__fd(mine))) return e;
  }
  DECLARE_LIBXDP_OPTS(xdp_program_opts, opts, .obj = ext.get(), .prog_name = HEIMDALL_PROG_NAME);
  XdpProgramPtr prog(xdp_program__create(&opts));
  if (long e = libxdp_get_error(prog.get())) {
    prog.release();  // an error pointer, nothing to close
    return static_cast<int>(e);
  }
  if (!prog) return -ENOMEM;
  // What heimdall passes goes on to the programs after it; what it answers (TX), drops or
  // redirects to its AF_XDP sockets ends there.
  xdp_program__set_run_prio(prog.get(), HEIMDALL_RUN_PRIO);
  for (unsigned a = XDP_ABORTED; a <= XDP_REDIRECT; a++) xdp_program__set_chain_call_enabled(prog.get(), a, a == XDP_PASS);
  enum xdp_attach_mode mode = mode_flags == XDP_FLAGS_SKB_MODE ? XDP_MODE_SKB : XDP_MODE_NATIVE;
  // libxdp loads the program (and the dispatcher): signals wait, as for the first load.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old);
  int err = xdp_program__attach(prog.get(), ifindex, mode, 0);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (err) return err < 0 ? err : -err;
  *attached_id = xdp_program__id(prog.get());
  ext_prog_.reset();
  ext_obj_ = std::move(ext);
  ext_prog_ = std::move(prog);
  return 0;
}

// The pass-through object built beside this one (bpf/xdp_pass.bpf.o): small, with BTF,
// what DispatcherUnavailable() asks the kernel with.
std::string XdpProgram::ProbeObject() const {
  size_t slash = path_.rfind('/');
  return (slash == std::string::npos ? std::string() : path_.substr(0, slash + 1)) + "xdp_pass.bpf.o";
}

// attach(ifname, mode: 'native'|'generic'|'auto', force: boolean, how: 'auto'|'dispatcher'|'direct')
Napi::Value XdpProgram::Attach(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  EnsureOpen(env);
  std::string ifname = ArgString(info, 0, "ifname");
  std::string mode = ArgString(info, 1, "mode");
  bool force = info[2].ToBoolean();
  std::string how = ArgString(info, 3, "how");
  ResetLibbpfLog();
  AttachResult r = AttachXdp(env, ifname, prog_fd_, prog_id_, mode, force, how,
                             [this](int ifindex, uint32_t flags, uint32_t *id) { return AttachThroughDispatcher(ifindex, flags, id); }, ProbeObject());
  if (!r.dispatcher && !r.second_load) {
    ext_prog_.reset();
    ext_obj_.reset();
  }
  ifindex_ = r.ifindex;
  attach_mode_flags_ = r.mode_flags;
  via_dispatcher_ = r.dispatcher;
  attached_id_ = r.dispatcher || r.second_load ? r.attached_id : prog_id_;
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
  if (r.dispatcher) {
    Napi::Object d = Napi::Object::New(env);
    d.Set("id", r.dispatcher_id);
    d.Set("progId", r.attached_id);
    d.Set("position", r.position);
    d.Set("count", r.count);
    out.Set("dispatcher", d);
  } else {
    out.Set("dispatcher", env.Null());
  }
  out.Set("directReason", r.dispatcher || r.direct_reason.empty() ? env.Null() : Napi::String::New(env, r.direct_reason));
  return out;
}

// detach(): removes this program from the interface it was attached to, only if it is
// still there (directly: the one attached; through a dispatcher: one of its programs,
// the others left running). Returns whether it removed it.
Napi::Value XdpProgram::Detach(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!obj_ || ifindex_ == 0) return Napi::Boolean::New(env, false);
  bool removed;
  if (via_dispatcher_) {
    ResetLibbpfLog();
    int err = DispatcherRemove(ifindex_, attached_id_);
    if (err && err != -ENOENT && err != -ENODEV)
      ThrowErrno(env, err, "xdp_program__detach", "cannot remove heimdall from the libxdp dispatcher on ifindex " + std::to_string(ifindex_));
    removed = err == 0;
    ext_prog_.reset();
    ext_obj_.reset();
  } else if (ext_prog_) {
    // The second load, which libxdp attached alone.
    removed = DetachXdp(env, ifindex_, attach_mode_flags_, xdp_program__fd(ext_prog_.get()));
    ext_prog_.reset();
    ext_obj_.reset();
  } else {
    removed = DetachXdp(env, ifindex_, attach_mode_flags_, prog_fd_);
  }
  ifindex_ = 0;
  attach_mode_flags_ = 0;
  via_dispatcher_ = false;
  attached_id_ = 0;
  return Napi::Boolean::New(env, removed);
}

// The fields the program trusts, checked against a class's room.
template <typename V>
void CheckHotValue(Napi::Env env, const hot_key *k, const V *v, uint32_t name_max, uint32_t rr_max, uint32_t records_max,
                   uint32_t capacity) {
  if (k->name_len < 1 || k->name_len > name_max) throw Napi::RangeError::New(env, "key name_len out of range");
  if (v->records_len > records_max || v->rr_count > rr_max) throw Napi::RangeError::New(env, "value records_len or rr_count out of range");
  if (v->hit_slot >= capacity) throw Napi::RangeError::New(env, "value hit_slot beyond the hot map capacity");
  for (uint32_t i = 0; i < v->rr_count; i++)
    if (v->ttl_off[i] + 4u > v->records_len) throw Napi::RangeError::New(env, "value ttl_off beyond records_len");
}

// The small entries' table (heimdall.h, struct hot_slot). This process is its one
// writer (the main thread's FastPath); the XDP program reads it on every CPU. A write
// makes seq odd, stores the key and entry, and makes seq even again: the release fences
// keep the stores of the entry after the first and before the second, which is all a
// reader that checks seq before and after needs (on x86 the stores go out in order
// anyway; the fences keep the compiler from moving them).
int64_t XdpProgram::SlotFind(const hot_key *k, int64_t *free) const {
  const hot_slot *t = Slots();
  uint32_t base = static_cast<uint32_t>(k->name_hash);
  if (free) *free = -1;
  for (uint32_t i = 0; i < HOT_SLOT_PROBE; i++) {
    uint32_t idx = (base + i) & slot_mask_;
    const hot_slot *sl = &t[idx];
    if (memcmp(&sl->key, k, sizeof(hot_key)) == 0) return idx;
    if (free && *free < 0 && sl->key.name_len == 0) *free = idx;
  }
  return -1;
}

void XdpProgram::SlotWrite(uint32_t i, const hot_key *k, const hot_small *v) {
  hot_slot *sl = &Slots()[i];
  uint32_t seq = __atomic_load_n(&sl->seq, __ATOMIC_RELAXED);
  __atomic_store_n(&sl->seq, seq | 1, __ATOMIC_RELAXED);
  __atomic_thread_fence(__ATOMIC_RELEASE);
  if (k) {
    memcpy(&sl->key, k, sizeof(hot_key));
    memcpy(&sl->v, v, sizeof(hot_small));
  } else {
    memset(&sl->key, 0, sizeof(hot_key));
    memset(&sl->v, 0, sizeof(hot_small));
  }
  __atomic_thread_fence(__ATOMIC_RELEASE);
  __atomic_store_n(&sl->seq, (seq | 1) + 1, __ATOMIC_RELAXED);
}

// A consistent copy of slot i (false when empty). This process is the only writer, so
// a read here never meets a write in progress; the check is kept so it stays true.
// A slot left odd by someone else (bpftool, as a test does) reads as empty after a bounded
// number of tries rather than holding the caller.
bool XdpProgram::SlotRead(uint32_t i, hot_key *k, hot_small *v) const {
  const hot_slot *sl = &Slots()[i];
  for (int tries = 0; tries < 1000; tries++) {
    uint32_t seq = __atomic_load_n(&sl->seq, __ATOMIC_ACQUIRE);
    memcpy(k, &sl->key, sizeof(hot_key));
    if (v) memcpy(v, &sl->v, sizeof(hot_small));
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    if (!(seq & 1) && __atomic_load_n(&sl->seq, __ATOMIC_RELAXED) == seq) return k->name_len != 0;
  }
  return false;
}

// Converts a small entry to the large layout (the same fields, larger rooms).
static void SmallToLarge(const hot_small *s, hot_value *v) {
  memset(v, 0, sizeof(*v));
  memcpy(v, s, sizeof(hot_head));
  memcpy(v->name, s->name, sizeof(s->name));
  memcpy(v->ttl_off, s->ttl_off, sizeof(s->ttl_off));
  memcpy(v->records, s->records, sizeof(s->records));
}

// hotPut(key, value) -> 'small' | 'large': writes one hot entry after checking the fields
// the program trusts, and says where it went. A value of sizeof(hot_small) goes to its
// slot in hot_slots (replacing the key's entry there, or into a free slot of its
// window); when the window is full it goes to hot_map in the large layout. A value of
// sizeof(hot_value) goes to hot_map. The caller removes the key from the other class
// (hotDelete(key, class)).
Napi::Value XdpProgram::HotPut(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  EnsureOpen(env);
  auto *k = reinterpret_cast<const hot_key *>(ArgBuffer(info, 0, "key", sizeof(hot_key)).Data());
  auto buf = ArgBuffer(info, 1, "value");
  const void *large = buf.Data();
  hot_value converted;
  if (buf.Length() == sizeof(hot_small)) {
    auto *v = reinterpret_cast<const hot_small *>(buf.Data());
    CheckHotValue(env, k, v, HOT_SMALL_NAME_MAX, HOT_SMALL_RR_MAX, HOT_SMALL_RECORDS_MAX, hot_capacity_);
#if defined(__x86_64__)
    int64_t free_slot;
    int64_t at = SlotFind(k, &free_slot);
    if (at < 0) at = free_slot;
    if (at >= 0) {
      SlotWrite(static_cast<uint32_t>(at), k, v);
      return Napi::String::New(env, "small");
    }
#endif
    // (Elsewhere than x86 the table stays empty: the program's check of a slot relies on
    // loads not being reordered with loads, which x86 gives and weaker CPUs do not.)
    SmallToLarge(v, &converted);
    large = &converted;
  } else if (buf.Length() == sizeof(hot_value)) {
    CheckHotValue(env, k, reinterpret_cast<const hot_value *>(buf.Data()), HOT_NAME_MAX, HOT_RR_MAX, HOT_RECORDS_MAX, hot_capacity_);
  } else {
    throw Napi::RangeError::New(env, "value must be " + std::to_string(sizeof(hot_small)) + " (small) or " +
                                         std::to_string(sizeof(hot_value)) + " bytes");
  }
  if (int e = bpf_map_update_elem(hot_fd_, k, large, BPF_ANY))
    ThrowErrno(env, e, "bpf_map_update_elem", e == -E2BIG ? "hot map is full" : "cannot write hot entry");
  return Napi::String::New(env, "large");
}

// hotDelete(key, cls?): removes the key from the class named ('small': hot_slots,
// 'large': hot_map), or from both; returns whether one had it.
Napi::Value XdpProgram::HotDelete(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  EnsureOpen(env);
  auto key = ArgBuffer(info, 0, "key", sizeof(hot_key));
  bool small = true, large = true;
  if (info.Length() > 1 && !info[1].IsUndefined()) {
    if (!info[1].IsString()) throw Napi::TypeError::New(env, "class must be 'small' or 'large'");
    std::string c = info[1].As<Napi::String>();
    if (c != "small" && c != "large") throw Napi::RangeError::New(env, "class must be 'small' or 'large'");
    small = c == "small";
    large = !small;
  }
  bool removed = false;
  auto *k = reinterpret_cast<const hot_key *>(key.Data());
  if (small && k->name_len != 0) {
    int64_t at = SlotFind(k, nullptr);
    if (at >= 0) {
      SlotWrite(static_cast<uint32_t>(at), nullptr, nullptr);
      removed = true;
    }
  }
  if (large) {
    if (int e = bpf_map_delete_elem(hot_fd_, key.Data())) {
      if (e != -ENOENT) ThrowErrno(env, e, "bpf_map_delete_elem", "cannot delete hot entry");
    } else {
      removed = true;
    }
  }
  return Napi::Boolean::New(env, removed);
}

// hotGet(key): the value under key, from hot_slots (a Buffer of sizeof(hot_small)) or
// hot_map (sizeof(hot_value)), or null.
Napi::Value XdpProgram::HotGet(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  EnsureOpen(env);
  auto key = ArgBuffer(info, 0, "key", sizeof(hot_key));
  auto *k = reinterpret_cast<const hot_key *>(key.Data());
  int64_t at = k->name_len != 0 ? SlotFind(k, nullptr) : -1;
  if (at >= 0) {
    hot_key got;
    auto small = Napi::Buffer<uint8_t>::New(env, sizeof(hot_small));
    if (SlotRead(static_cast<uint32_t>(at), &got, reinterpret_cast<hot_small *>(small.Data())) &&
        memcmp(&got, k, sizeof(got)) == 0)
      return small;
  }
  auto out = Napi::Buffer<uint8_t>::New(env, sizeof(hot_value));
  if (int e2 = bpf_map_lookup_elem(hot_fd_, key.Data(), out.Data())) {
    if (e2 == -ENOENT) return env.Null();
    ThrowErrno(env, e2, "bpf_map_lookup_elem", "cannot read hot entry");
  }
  return out;
}

// hotKeys(): every key in the hot maps (both classes), as Buffers.
Napi::Value XdpProgram::HotKeys(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  EnsureOpen(env);
  std::vector<hot_key> keys;
  for (uint32_t i = 0; i <= slot_mask_; i++) {
    hot_key k;
    if (SlotRead(i, &k, nullptr)) keys.push_back(k);
  }
  hot_key cur, next;
  const void *prev = nullptr;
  size_t walked = 0;
  while (bpf_map_get_next_key(hot_fd_, prev, &next) == 0) {
    keys.push_back(next);
    cur = next;
    prev = &cur;
    if (++walked > hot_capacity_) break;  // concurrent deletes can restart the walk
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
  uint32_t slot = ArgUint32(info, 0, "slot", 0, hot_capacity_ - 1);
  return Napi::BigInt::New(env, SlotHits(slot));
}

uint64_t XdpProgram::SlotHits(uint32_t slot) const {
  uint64_t sum = 0;
  volatile uint64_t *hits = Hits();
  for (int c = 0; c < ncpus_; c++) sum += hits[static_cast<size_t>(c) * hot_capacity_ + slot];
  return sum;
}

// hitsReadAll(out: Float64Array): every slot's hit counter, summed over CPUs, into
// out[slot]; loads from the mapped counters, no syscall. Returns the slots read.
Napi::Value XdpProgram::HitsReadAll(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  EnsureOpen(env);
  ArraySpan<double> out = ArgFloat64Array(info, 0, "out");
  if (out.len < hot_capacity_) throw Napi::RangeError::New(env, "out is shorter than the hot map");
  for (uint32_t slot = 0; slot < hot_capacity_; slot++) out.data[slot] = static_cast<double>(SlotHits(slot));
  return Napi::Number::New(env, hot_capacity_);
}

Napi::Value XdpProgram::HitsReset(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  EnsureOpen(env);
  uint32_t slot = ArgUint32(info, 0, "slot", 0, hot_capacity_ - 1);
  volatile uint64_t *hits = Hits();
  for (int c = 0; c < ncpus_; c++) hits[static_cast<size_t>(c) * hot_capacity_ + slot] = 0;
  return env.Undefined();
}

// stats(): BigUint64Array of the outcome counters summed over CPUs, index = enum heimdall_stat.
Napi::Value XdpProgram::Stats(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  EnsureOpen(env);
  uint32_t zero = 0;
  std::vector<heimdall_stats> per(ncpus_);
  if (int e = bpf_map_lookup_elem(stats_fd_, &zero, per.data())) ThrowErrno(env, e, "bpf_map_lookup_elem", "cannot read counters");
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
  if (int e = bpf_map_update_elem(stats_fd_, &zero, per.data(), BPF_ANY)) ThrowErrno(env, e, "bpf_map_update_elem", "cannot reset counters");
  return env.Undefined();
}

// setRuntime({ answersOff, rrlCost, rrlAllCost, rrlDebt, rrlSlip, rrlV4Prefix, rrlV6Prefix })
// (rate-limit figures in the buckets' units: bpf/heimdall.h RRL_UNIT_SHIFT)
Napi::Value XdpProgram::SetRuntime(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  EnsureOpen(env);
  Napi::Object o = ArgObject(info, 0, "runtime");
  heimdall_runtime rt = {};
  rt.answers_off = o.Get("answersOff").ToBoolean() ? 1 : 0;
  rt.rrl_cost = PropUint32(o, "rrlCost", 0, RRL_BURST);
  rt.rrl_all_cost = PropUint32(o, "rrlAllCost", 0, RRL_BURST);
  rt.rrl_debt = PropUint32(o, "rrlDebt", 0, static_cast<uint32_t>(RRL_BURST) * RRL_WINDOW_MAX);
  rt.rrl_slip = PropUint32(o, "rrlSlip", 0, 100);
  rt.rrl_v4_prefix = PropUint32(o, "rrlV4Prefix", 1, 32);
  rt.rrl_v6_prefix = PropUint32(o, "rrlV6Prefix", 1, 64);
  uint32_t zero = 0;
  if (int e = bpf_map_update_elem(runtime_fd_, &zero, &rt, BPF_ANY)) ThrowErrno(env, e, "bpf_map_update_elem", "cannot write runtime settings");
  return env.Undefined();
}

// The edge maps userspace writes by name: the access-list tries and the served addresses
// (acl16 and rrl are written through mmap instead: mapRegion).
int XdpProgram::EdgeMapFd(Napi::Env env, const std::string &name, size_t *key_size, size_t *value_size) const {
  EnsureOpen(env);
  if (name == HEIMDALL_MAP_ACL4) {
    *key_size = sizeof(acl_key_v4);
    *value_size = sizeof(acl_value);
    return acl4_fd_;
  }
  if (name == HEIMDALL_MAP_ACL6) {
    *key_size = sizeof(acl_key_v6);
    *value_size = sizeof(acl_value);
    return acl6_fd_;
  }
  if (name == HEIMDALL_MAP_LOCAL) {
    *key_size = 4;
    *value_size = sizeof(heimdall_local);
    return local_fd_;
  }
  throw Napi::RangeError::New(env, "no edge map named '" + name + "'");
}

// edgePut(map, key, value): one entry of an access list or own-address set.
Napi::Value XdpProgram::EdgePut(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  size_t ks, vs;
  int fd = EdgeMapFd(env, ArgString(info, 0, "map"), &ks, &vs);
  auto key = ArgBuffer(info, 1, "key", ks);
  auto value = ArgBuffer(info, 2, "value", vs);
  if (vs == sizeof(acl_value)) {
    uint32_t plen;
    memcpy(&plen, key.Data(), 4);
    if (plen > (ks - 4) * 8) throw Napi::RangeError::New(env, "prefix length beyond the address");
  }
  if (int e = bpf_map_update_elem(fd, key.Data(), value.Data(), BPF_ANY))
    ThrowErrno(env, e, "bpf_map_update_elem", e == -E2BIG || e == -ENOSPC ? "edge map is full" : "cannot write edge map entry");
  return env.Undefined();
}

// edgeDelete(map, key) -> whether it was there
Napi::Value XdpProgram::EdgeDelete(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  size_t ks, vs;
  int fd = EdgeMapFd(env, ArgString(info, 0, "map"), &ks, &vs);
  auto key = ArgBuffer(info, 1, "key", ks);
  if (int e = bpf_map_delete_elem(fd, key.Data())) {
    if (e == -ENOENT) return Napi::Boolean::New(env, false);
    ThrowErrno(env, e, "bpf_map_delete_elem", "cannot delete edge map entry");
  }
  return Napi::Boolean::New(env, true);
}

// edgeKeys(map) -> Buffer[]
Napi::Value XdpProgram::EdgeKeys(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  size_t ks, vs;
  int fd = EdgeMapFd(env, ArgString(info, 0, "map"), &ks, &vs);
  std::vector<std::vector<uint8_t>> keys;
  std::vector<uint8_t> cur(ks), next(ks);
  const void *prev = nullptr;
  while (bpf_map_get_next_key(fd, prev, next.data()) == 0) {
    keys.push_back(next);
    cur = next;
    prev = cur.data();
    if (keys.size() > HEIMDALL_ACL_MAX) break;
  }
  Napi::Array arr = Napi::Array::New(env, keys.size());
  for (size_t i = 0; i < keys.size(); i++) arr.Set(i, Napi::Buffer<uint8_t>::Copy(env, keys[i].data(), ks));
  return arr;
}

Napi::Value XdpProgram::Close(const Napi::CallbackInfo &info) {
  Release();
  return info.Env().Undefined();
}

Napi::Value XdpProgram::Describe(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("open", static_cast<bool>(obj_));
  o.Set("progId", prog_id_);
  o.Set("progFd", prog_fd_);
  o.Set("ifindex", ifindex_);
  o.Set("attachedProgId", attached_id_);
  o.Set("viaDispatcher", via_dispatcher_);
  o.Set("hotCapacity", hot_capacity_);
  o.Set("hotSlots", obj_ ? static_cast<double>(slot_mask_) + 1 : 0);
  o.Set("xsksMapFd", xsks_fd_);
  o.Set("rrlMapFd", rrl_fd_);
  o.Set("hotSlotsMapFd", hot_slots_fd_);
  o.Set("acl16MapFd", acl16_fd_);
  o.Set("rrlBuckets", rrl_buckets_);
  o.Set("rrlSeed", rrl_seed_);
  o.Set("cpus", ncpus_);
  o.Set("hashSeed", Napi::BigInt::New(env, static_cast<uint64_t>(hash_seed_)));
  return o;
}

}  // namespace heimdall
