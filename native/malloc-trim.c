/*
 * malloc_trim(0) for Node (src/core/malloc-trim.ts): returns the whole free pages in every
 * malloc arena to the system. Node has no binding for it; glibc by itself returns only the free
 * memory at the top of a heap. Built by scripts/native.mjs as dist/native/malloc-trim.node.
 */
#include <malloc.h>
#include <node_api.h>

/* trim() -> true when glibc released any memory. */
static napi_value trim(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value released;
  if (napi_get_boolean(env, malloc_trim(0) != 0, &released) != napi_ok) return NULL;
  return released;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_value fn;
  if (napi_create_function(env, "trim", NAPI_AUTO_LENGTH, trim, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "trim", fn) != napi_ok) return NULL;
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
