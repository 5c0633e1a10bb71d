{
  "targets": [
    {
      "target_name": "ocelot_netlink",
      "sources": ["ocelot_netlink.c"],
      "cflags": ["-Wall", "-Wextra", "-O2", "-std=gnu11"],
      "defines": ["NAPI_VERSION=8"]
    },
    {
      "target_name": "ocelot-cni-shim",
      "type": "executable",
      "sources": ["cni_shim.c"],
      "cflags": ["-Wall", "-Wextra", "-O2", "-std=gnu11"]
    }
  ]
}
