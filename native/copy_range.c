// hvlab's copy_range addon: Linux's copy_file_range(2) for Node.js, which
// has no ranged form of it (fs.copyFile copies whole files). It copies
// page cache to page cache inside the kernel: one copy of each byte where
// pread(2) then pwrite(2) make two.
//
// copyFileRange(fdIn, offsetIn, fdOut, offsetOut, length) -> bytes copied
// (fewer than `length` at the end of the input, 0 past it). It throws an
// Error whose `code` is the errno's name (EXDEV, ENOSYS, EOPNOTSUPP,
// EINVAL, EIO, ...): the caller decides which mean "copy another way".
#define _GNU_SOURCE
#include <errno.h>
#include <node_api.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#ifdef __linux__
#include <sys/syscall.h>
#endif

static const char* errno_name(int e) {
  switch (e) {
    case EXDEV: return "EXDEV";
    case ENOSYS: return "ENOSYS";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    case EINVAL: return "EINVAL";
    case EBADF: return "EBADF";
    case EIO: return "EIO";
    case ENOSPC: return "ENOSPC";
    case EFBIG: return "EFBIG";
    case EISDIR: return "EISDIR";
    case ENOMEM: return "ENOMEM";
    case EOVERFLOW: return "EOVERFLOW";
    case EPERM: return "EPERM";
    case ETXTBSY: return "ETXTBSY";
    default: return "EUNKNOWN";
  }
}

static napi_value throw_errno(napi_env env, int e) {
  napi_value code, message, error;
  napi_create_string_utf8(env, errno_name(e), NAPI_AUTO_LENGTH, &code);
  napi_create_string_utf8(env, strerror(e), NAPI_AUTO_LENGTH, &message);
  napi_create_error(env, code, message, &error);
  napi_set_named_property(env, error, "code", code);
  napi_value errno_value;
  napi_create_int32(env, e, &errno_value);
  napi_set_named_property(env, error, "errno", errno_value);
  napi_throw(env, error);
  return NULL;
}

// A non-negative integer argument no larger than 2^53 - 1, or -1.
static int64_t integer_arg(napi_env env, napi_value value) {
  double d;
  if (napi_get_value_double(env, value, &d) != napi_ok) return -1;
  if (!(d >= 0 && d <= 9007199254740991.0) || d != (double)(int64_t)d) return -1;
  return (int64_t)d;
}

static napi_value copy_file_range_js(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc != 5) {
    napi_throw_type_error(env, "EINVAL", "copyFileRange takes fdIn, offsetIn, fdOut, offsetOut, length");
    return NULL;
  }
  int64_t a[5];
  for (int i = 0; i < 5; i++) {
    a[i] = integer_arg(env, argv[i]);
    if (a[i] < 0 || ((i == 0 || i == 2) && a[i] > 0x7fffffff)) {
      napi_throw_range_error(env, "EINVAL", "copyFileRange: every argument must be a non-negative integer");
      return NULL;
    }
  }
#if defined(__linux__) && defined(SYS_copy_file_range)
  int64_t in = a[1], out = a[3];  // loff_t: 64 bits
  ssize_t n;
  do {
    n = syscall(SYS_copy_file_range, (int)a[0], &in, (int)a[2], &out, (size_t)a[4], 0u);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return throw_errno(env, errno);
  napi_value result;
  napi_create_double(env, (double)n, &result);
  return result;
#else
  return throw_errno(env, ENOSYS);
#endif
}

NAPI_MODULE_INIT() {
  napi_value fn;
  napi_create_function(env, "copyFileRange", NAPI_AUTO_LENGTH, copy_file_range_js, NULL, &fn);
  napi_set_named_property(env, exports, "copyFileRange", fn);
  return exports;
}
