{
  "targets": [
    {
      "target_name": "fsx",
      "sources": ["fsx.c", "segment.c", "clone.c"],
      "cflags": ["-O2", "-Wall"]
    }
  ]
}
