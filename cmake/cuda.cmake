# CUDA part of the build: torch-free kernel instantiations (csrc/cuda/*.cu) compiled by nvcc for
# every arch in MOE_EXT_CUDA_ARCHS (+ PTX for the lowest, so newer GPUs JIT it); the bindings
# (csrc/binding/, host compiler) are instantiated for Target::kCuda under MOE_EXT_WITH_CUDA.
include(${CMAKE_CURRENT_LIST_DIR}/cuda_archs.cmake)
moe_ext_cuda_architectures("${MOE_EXT_CUDA_ARCHS}" _cuda_archs)
set(CMAKE_CUDA_ARCHITECTURES ${_cuda_archs})
enable_language(CUDA)
find_package(CUDAToolkit REQUIRED)
set(CMAKE_CUDA_STANDARD 20)
set(CMAKE_CUDA_STANDARD_REQUIRED ON)
message(STATUS "moe_ext: CUDA ${CMAKE_CUDA_COMPILER_VERSION}, architectures ${CMAKE_CUDA_ARCHITECTURES}")

# Every instantiation file in csrc/cuda/ (a new op's .cu needs no edit here) but the test-only ones.
set(_cuda_test_sources csrc/cuda/selftest_ptx.cu csrc/cuda/tile_gemm.cu)
file(GLOB _cuda_sources CONFIGURE_DEPENDS RELATIVE ${CMAKE_CURRENT_SOURCE_DIR} csrc/cuda/*.cu
  csrc/cuda/gemm_instances/*.cu)  # generated: scripts/generate_kernels.py
list(REMOVE_ITEM _cuda_sources ${_cuda_test_sources})
add_library(moe_ext_cuda_kernels OBJECT ${_cuda_sources})
if(MOE_EXT_TEST_KERNELS)  # their SASS is checked by tests/test_build.py
  target_sources(moe_ext_cuda_kernels PRIVATE ${_cuda_test_sources})
endif()
target_include_directories(moe_ext_cuda_kernels PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/csrc)
target_compile_options(moe_ext_cuda_kernels PRIVATE
  $<$<COMPILE_LANGUAGE:CUDA>:--expt-relaxed-constexpr -lineinfo>)
set_target_properties(moe_ext_cuda_kernels PROPERTIES
  CUDA_RUNTIME_LIBRARY Shared
  CUDA_ARCHITECTURES "${_cuda_archs}")

# Hopper-only kernels (wgmma, TMA, setmaxnreg need sm_90a): built when 9.0a is listed.
if("90a-real" IN_LIST _cuda_archs)
  add_library(moe_ext_cuda_sm90 OBJECT csrc/cuda/sm90/grouped_gemm_sm90.cu)
  if(MOE_EXT_TEST_KERNELS)
    target_sources(moe_ext_cuda_sm90 PRIVATE csrc/cuda/sm90/wgmma_gemm.cu
      csrc/cuda/sm90/selftest_cluster.cu)
  endif()
  target_include_directories(moe_ext_cuda_sm90 PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/csrc)
  target_compile_options(moe_ext_cuda_sm90 PRIVATE
    $<$<COMPILE_LANGUAGE:CUDA>:--expt-relaxed-constexpr -lineinfo>)
  set_target_properties(moe_ext_cuda_sm90 PROPERTIES
    CUDA_RUNTIME_LIBRARY Shared
    CUDA_ARCHITECTURES "90a-real")
  target_link_libraries(_C PRIVATE moe_ext_cuda_sm90)
  target_compile_definitions(_C PRIVATE MOE_EXT_WITH_SM90)
  target_compile_definitions(moe_ext_cuda_kernels PRIVATE MOE_EXT_WITH_SM90)
endif()

target_compile_definitions(_C PRIVATE MOE_EXT_WITH_CUDA)
target_link_libraries(_C PRIVATE moe_ext_cuda_kernels CUDA::cudart c10_cuda torch_cuda)
