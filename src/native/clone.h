// The async hard-link clone of a snapshot tree (clone.c), registered by fsx.c's init.
#ifndef CLONE_H
#define CLONE_H
#include <node_api.h>
void clone_init(napi_env env, napi_value exports);
#endif
