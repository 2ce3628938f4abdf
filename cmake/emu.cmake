# The CPU SIMT emulator backend: the CUDA kernel sources (csrc/kernels/) compiled by the host
# compiler against csrc/simt/, registered as torch.ops.moe_ext_emu.*. Needs only the CUDA
# headers (cuda_runtime_api.h, cuda_fp16.h, cuda_bf16.h have host implementations), not nvcc.
if(NOT EXISTS "${MOE_EXT_CUDA_INCLUDE_DIR}/cuda_fp16.h")
  message(FATAL_ERROR "moe_ext: the emulator needs the CUDA headers; "
                      "MOE_EXT_CUDA_INCLUDE_DIR=${MOE_EXT_CUDA_INCLUDE_DIR} has no cuda_fp16.h")
endif()
message(STATUS "moe_ext: emulator backend with CUDA headers from ${MOE_EXT_CUDA_INCLUDE_DIR}")

# The emulator runtime, and every instantiation file in csrc/emu/ (a new op's .cpp needs no edit
# here) but the test-only ones, added below under MOE_EXT_TEST_KERNELS.
set(_emu_test_sources csrc/emu/tile_gemm.cpp csrc/emu/wgmma_gemm.cpp csrc/emu/selftest_exec.cpp
    csrc/emu/selftest_ptx.cpp csrc/emu/selftest_cluster.cpp)
file(GLOB _emu_sources CONFIGURE_DEPENDS RELATIVE ${CMAKE_CURRENT_SOURCE_DIR} csrc/emu/*.cpp)
list(REMOVE_ITEM _emu_sources ${_emu_test_sources})
add_library(moe_ext_simt STATIC csrc/simt/fiber.cpp csrc/simt/runtime.cpp ${_emu_sources})
target_include_directories(moe_ext_simt PUBLIC ${MOE_EXT_CUDA_INCLUDE_DIR})
target_include_directories(moe_ext_simt PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/csrc)
# The emulator's side of csrc/common/*.h: their non-__CUDACC__ branches #include <moe_emu/...>,
# resolved only by this path (csrc/simt/include/moe_emu/; PUBLIC for _C's emu_selftest bindings).
target_include_directories(moe_ext_simt PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/csrc/simt/include)
find_package(Threads REQUIRED)
target_link_libraries(moe_ext_simt PUBLIC Threads::Threads)

# The emulator's own tests (torch.ops.moe_ext_emu_test): its self-test kernels and the test GEMMs.
if(MOE_EXT_TEST_KERNELS)
  target_sources(moe_ext_simt PRIVATE ${_emu_test_sources})
  target_sources(_C PRIVATE
    csrc/binding/emu_selftest_exec.cpp
    csrc/binding/emu_selftest_ptx.cpp
    csrc/binding/emu_selftest_gemm.cpp
    csrc/binding/emu_selftest_cluster.cpp
  )
endif()
target_compile_definitions(_C PRIVATE MOE_EXT_WITH_EMU)
target_link_libraries(_C PRIVATE moe_ext_simt)
