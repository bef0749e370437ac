{
  "targets": [
    {
      "target_name": "fsx",
      "sources": ["fsx.c", "segment.c", "clone.c", "mount.c", "scan.c", "sha256.c"],
      "defines": ["NAPI_VERSION=8"],
      "cflags": ["-O2", "-Wall"]
    }
  ]
}
