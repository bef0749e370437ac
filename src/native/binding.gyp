{
  "targets": [
    {
      "target_name": "fsx",
      "sources": ["fsx.c", "segment.c"],
      "cflags": ["-O2", "-Wall"]
    }
  ]
}
