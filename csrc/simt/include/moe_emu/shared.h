// The CPU SIMT emulator's definitions of common/shared.h's MOE_SHARED_ARRAY / MOE_SHARED_DYNAMIC
// (per-block shared memory from the emulator's runtime): the non-__CUDACC__ side of that header.
// Only the emulator's build puts csrc/simt/include on the include path (cmake/emu.cmake).
#pragma once

#include "../../runtime.h"

// The address of a function-local static is a unique key per declaration (and per template
// instantiation); the first thread of a block to reach it allocates, the others look it up.
#define MOE_SHARED_ARRAY(T, name, n) \
  static const char name##_key_ = 0; \
  T* name = static_cast<T*>(         \
      ::moe_simt::shared_static(&name##_key_, sizeof(T) * (n), alignof(T) < 16 ? 16 : alignof(T)))
#define MOE_SHARED_DYNAMIC(T, name) T* name = static_cast<T*>(::moe_simt::shared_dynamic())
