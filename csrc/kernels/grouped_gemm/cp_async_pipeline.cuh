// The k loop of the cp.async-pipelined GEMM kernels (tensor_core.cuh, ../grouped_mm_fp8.cuh):
// a `stages`-deep ring of shared-memory stages (run-time depth >= 2) filled by cp.async.
//
//   prologue: slices 0 .. stages-2 in flight (one commit group per slice, empty past k_tiles)
//   slice kt: wait until slice kt has landed (this thread's copies), __syncthreads (everyone's,
//             and slice kt-1's stage is free), refill that stage with slice kt + stages - 1,
//             commit, compute slice kt from its stage
//   after:    wait for all copies (only empty groups can be pending) and __syncthreads, so the
//             caller may reuse the stages (the epilogue's staging)
//
// Stage indices advance with wrap-around (no run-time modulo in the loop). load(stage, kt)
// issues the copies of slice kt into `stage`; compute(stage, kt) reads it.
#pragma once

#include "../../common/ptx.h"
#include "../../common/portable.h"

namespace moe_ext::MOE_KERNEL_NS {

MOE_DEVICE MOE_FORCEINLINE void cp_async_wait_pending(int pending) {
  switch (pending) {  // wait_group takes an immediate
    case 0: cp_async_wait<0>(); break;
    case 1: cp_async_wait<1>(); break;
    case 2: cp_async_wait<2>(); break;
    default: cp_async_wait<3>(); break;
  }
}

template <typename Load, typename Compute>
MOE_DEVICE MOE_FORCEINLINE void cp_async_pipeline(int stages, int k_tiles, Load&& load,
                                                  Compute&& compute) {
  for (int s = 0; s < stages - 1; ++s) {
    if (s < k_tiles) load(s, s);
    cp_async_commit();
  }
  int read_stage = 0, write_stage = stages - 1;
  for (int kt = 0; kt < k_tiles; ++kt) {
    cp_async_wait_pending(stages - 2);
    __syncthreads();
    if (kt + stages - 1 < k_tiles) load(write_stage, kt + stages - 1);
    cp_async_commit();
    write_stage = write_stage + 1 == stages ? 0 : write_stage + 1;
    compute(read_stage, kt);
    read_stage = read_stage + 1 == stages ? 0 : read_stage + 1;
  }
  cp_async_wait_all();
  __syncthreads();
}

}  // namespace moe_ext::MOE_KERNEL_NS
