// SPDX-License-Identifier: MIT
/*
 * bpf-lines: where each source line of a loaded BPF program sits in its JIT image, for
 * `npm run bench:cpu-split` with SPLIT_LINES=1 (docs/BENCHMARKS.md, "The XDP program,
 * line by line"). perf samples land on JIT addresses; bpftool could map them to source
 * lines, but this system's (Debian 12's, built without libbfd) cannot. The kernel keeps the
 * mapping (jited_line_info next to line_info, both per instruction of the program's
 * BTF line records), so this asks for it directly.
 *
 * Usage: bpf-lines PROG_ID
 * Prints one line per function, "func ADDR LEN NAME", then one per line record,
 * "line ADDR FILE:LINE TEXT" (FILE the source file's base name: code inlined from a
 * header says so), addresses in hex, in the kernel's order (by function, then address).
 */
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *array(__u32 n, __u32 size) {
  void *p = calloc(n ? n : 1, size ? size : 1);
  if (!p) {
    fprintf(stderr, "bpf-lines: out of memory\n");
    exit(1);
  }
  return p;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: bpf-lines PROG_ID\n");
    return 2;
  }
  int fd = bpf_prog_get_fd_by_id((__u32)strtoul(argv[1], NULL, 10));
  if (fd < 0) {
    fprintf(stderr, "bpf-lines: program %s: %s\n", argv[1], strerror(errno));
    return 1;
  }
  // First call: the counts and record sizes; second: the arrays.
  struct bpf_prog_info info = {0};
  __u32 len = sizeof(info);
  if (bpf_obj_get_info_by_fd(fd, &info, &len)) {
    fprintf(stderr, "bpf-lines: program info: %s\n", strerror(errno));
    return 1;
  }
  __u32 nline = info.nr_line_info, njline = info.nr_jited_line_info;
  __u32 nfunc = info.nr_jited_ksyms, nlens = info.nr_jited_func_lens;
  __u32 line_rec = info.line_info_rec_size, jline_rec = info.jited_line_info_rec_size;
  __u32 nfinfo = info.nr_func_info, finfo_rec = info.func_info_rec_size;
  __u32 btf_id = info.btf_id;
  if (!nline || !btf_id) {
    fprintf(stderr, "bpf-lines: program %s has no line information (built without -g?)\n", argv[1]);
    return 1;
  }
  if (njline != nline || !nfunc || nlens != nfunc) {
    fprintf(stderr, "bpf-lines: program %s has no JIT image to map (is net.core.bpf_jit_enable 0?)\n", argv[1]);
    return 1;
  }
  char *lines = array(nline, line_rec);
  __u64 *jlines = array(njline, jline_rec);
  __u64 *funcs = array(nfunc, sizeof(__u64));
  __u32 *lens = array(nlens, sizeof(__u32));
  char *finfo = array(nfinfo, finfo_rec);
  memset(&info, 0, sizeof(info));
  info.nr_line_info = nline;
  info.line_info_rec_size = line_rec;
  info.line_info = (__u64)(unsigned long)lines;
  info.nr_jited_line_info = njline;
  info.jited_line_info_rec_size = jline_rec;
  info.jited_line_info = (__u64)(unsigned long)jlines;
  info.nr_jited_ksyms = nfunc;
  info.jited_ksyms = (__u64)(unsigned long)funcs;
  info.nr_jited_func_lens = nlens;
  info.jited_func_lens = (__u64)(unsigned long)lens;
  info.nr_func_info = nfinfo;
  info.func_info_rec_size = finfo_rec;
  info.func_info = (__u64)(unsigned long)finfo;
  len = sizeof(info);
  if (bpf_obj_get_info_by_fd(fd, &info, &len)) {
    fprintf(stderr, "bpf-lines: program info: %s\n", strerror(errno));
    return 1;
  }
  // Addresses are zeroed for a reader the kernel does not show them to (kptr_restrict).
  for (__u32 i = 0; i < nfunc; i++)
    if (!funcs[i] || !lens[i]) {
      fprintf(stderr, "bpf-lines: the kernel hid program %s's addresses (run as root; kernel.kptr_restrict)\n", argv[1]);
      return 1;
    }
  struct btf *btf = btf__load_from_kernel_by_id(btf_id);
  if (!btf) {
    fprintf(stderr, "bpf-lines: BTF %u: %s\n", btf_id, strerror(errno));
    return 1;
  }
  for (__u32 i = 0; i < nfunc && i < nlens; i++) {
    const char *name = "?";
    if (i < nfinfo) {
      const struct bpf_func_info *f = (const void *)(finfo + (size_t)i * finfo_rec);
      const struct btf_type *t = btf__type_by_id(btf, f->type_id);
      const char *n = t ? btf__name_by_offset(btf, t->name_off) : NULL;
      if (n && *n) name = n;
    }
    printf("func %llx %u %s\n", (unsigned long long)funcs[i], lens[i], name);
  }
  for (__u32 i = 0; i < nline; i++) {
    const struct bpf_line_info *l = (const void *)(lines + (size_t)i * line_rec);
    const __u64 *addr = (const void *)((const char *)jlines + (size_t)i * jline_rec);
    const char *text = btf__name_by_offset(btf, l->line_off);
    const char *file = btf__name_by_offset(btf, l->file_name_off);
    const char *base = file ? strrchr(file, '/') : NULL;
    base = base ? base + 1 : (file && *file ? file : "?");
    // A source line's text runs to its end; tabs and runs of spaces become one space.
    printf("line %llx %s:%u ", (unsigned long long)*addr, base, BPF_LINE_INFO_LINE_NUM(l->line_col));
    int space = 1;
    for (const char *c = text ? text : ""; *c; c++) {
      int s = *c == ' ' || *c == '\t';
      if (!s || !space) putchar(s ? ' ' : *c);
      space = s;
    }
    putchar('\n');
  }
  btf__free(btf);
  return 0;
}
