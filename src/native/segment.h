// Async filling and hashing of layer archive segments (segment.c), registered by fsx.c's init.
#ifndef SEGMENT_H
#define SEGMENT_H
#include <node_api.h>
void segment_init(napi_env env, napi_value exports);
#endif
