{
  "targets": [
    {
      "target_name": "fsx",
      "sources": ["fsx.c"],
      "cflags": ["-O2", "-Wall"]
    }
  ]
}
