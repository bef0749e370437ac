// mount(2)/umount2(2) on the threadpool (mount.c), registered by fsx.c's init.
#ifndef MOUNT_H
#define MOUNT_H
#include <node_api.h>
void mount_init(napi_env env, napi_value exports);
#endif
