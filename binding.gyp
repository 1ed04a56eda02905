{
  "targets": [
    {
      "target_name": "heimdall",
      "sources": [
        "addon/args.cc",
        "addon/dispatcher.cc",
        "addon/binding.cc",
        "addon/errors.cc",
        "addon/program.cc",
        "addon/testrun.cc",
        "addon/xdp_attach.cc",
        "addon/xsk.cc"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "bpf"
      ],
      "libraries": ["-lbpf", "-lxdp"],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-Wall", "-Wextra", "-Werror", "-Wno-missing-field-initializers"]
    }
  ]
}
