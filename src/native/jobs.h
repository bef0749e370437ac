// What the addon's async jobs (segment.c, clone.c) share: queueing a job whose completion settles a promise,
// and the Error a failed call rejects it with.
#ifndef JOBS_H
#define JOBS_H
#include <stdio.h>
#include <string.h>
#include <node_api.h>

// Queues `data` as async work named `name` on the threadpool; returns the promise `*deferred` settles.
static inline napi_value queue_job(napi_env env, const char *name, napi_async_execute_callback execute,
                                   napi_async_complete_callback complete, void *data, napi_deferred *deferred,
                                   napi_async_work *work) {
  napi_value promise, resource;
  napi_create_promise(env, deferred, &promise);
  napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &resource);
  napi_create_async_work(env, NULL, resource, execute, complete, data, work);
  napi_queue_async_work(env, *work);
  return promise;
}

// An Error "<what>: <strerror(err), or `otherwise` without an errno>[ '<path>']" with an `errno` property.
static inline napi_value errno_error(napi_env env, const char *what, int err, const char *otherwise, const char *path) {
  char text[4096 + 160];
  if (path && *path) snprintf(text, sizeof text, "%s: %s '%s'", what, err ? strerror(err) : otherwise, path);
  else snprintf(text, sizeof text, "%s: %s", what, err ? strerror(err) : otherwise);
  napi_value msg, error, v;
  napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &msg);
  napi_create_error(env, NULL, msg, &error);
  napi_create_int32(env, err, &v);
  napi_set_named_property(env, error, "errno", v);
  return error;
}

#endif
