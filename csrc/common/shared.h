// Shared-memory declarations that work on both paths. A plain `#define __shared__` cannot give
// every emulated block its own copy (nor express `extern __shared__`), so kernels declare shared
// memory only through these macros:
//   MOE_SHARED_ARRAY(float, tile, 256);   // static:  __shared__ float tile[256]
//   MOE_SHARED_DYNAMIC(half, smem);       // dynamic: extern __shared__ ... (launch-time size)
// Both give a pointer-like `name` indexable as an array; access it through ld_shared/st_shared.
#pragma once

#if defined(__CUDACC__)
#define MOE_SHARED_ARRAY(T, name, n) __shared__ __align__(16) T name[n]
#define MOE_SHARED_DYNAMIC(T, name)                            \
  extern __shared__ __align__(16) unsigned char name##_raw_[]; \
  T* name = reinterpret_cast<T*>(name##_raw_)
#else
#include "../simt/runtime.h"
// The address of a function-local static is a unique key per declaration (and per template
// instantiation); the first thread of a block to reach it allocates, the others look it up.
#define MOE_SHARED_ARRAY(T, name, n)                                                \
  static const char name##_key_ = 0;                                                \
  T* name = static_cast<T*>(::moe_simt::shared_static(&name##_key_, sizeof(T) * (n), \
                                                     alignof(T) < 16 ? 16 : alignof(T)))
#define MOE_SHARED_DYNAMIC(T, name) T* name = static_cast<T*>(::moe_simt::shared_dynamic())
#endif
