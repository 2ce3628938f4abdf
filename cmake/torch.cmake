# Locates the torch installed in the Python interpreter and exposes it as the INTERFACE target
# `moe_torch` (headers, libraries, C++ ABI flag). We do not use find_package(Torch): with a CUDA
# build of torch it insists on a full CUDA toolkit (and cuDNN/NVRTC lookups) even for a CPU-only
# build of this extension, and its TORCH_LIBRARIES may hold NOTFOUND entries.
execute_process(
  COMMAND ${Python_EXECUTABLE} -c
    "import os, torch; print(os.path.dirname(torch.__file__)); print(torch.__version__); print(int(torch._C._GLIBCXX_USE_CXX11_ABI)); print(torch.version.cuda or '')"
  OUTPUT_VARIABLE _torch_info
  OUTPUT_STRIP_TRAILING_WHITESPACE
  RESULT_VARIABLE _torch_rc)
if(NOT _torch_rc EQUAL 0)
  message(FATAL_ERROR "moe_ext: could not import torch with ${Python_EXECUTABLE}")
endif()
string(REPLACE "\n" ";" _torch_info "${_torch_info}")
list(GET _torch_info 0 MOE_TORCH_DIR)
list(GET _torch_info 1 MOE_TORCH_VERSION)
list(GET _torch_info 2 _torch_cxx11_abi)
message(STATUS "moe_ext: torch ${MOE_TORCH_VERSION} at ${MOE_TORCH_DIR}")

add_library(moe_torch INTERFACE)
target_include_directories(moe_torch SYSTEM INTERFACE
  ${MOE_TORCH_DIR}/include
  ${MOE_TORCH_DIR}/include/torch/csrc/api/include)
target_compile_definitions(moe_torch INTERFACE _GLIBCXX_USE_CXX11_ABI=${_torch_cxx11_abi})
target_link_directories(moe_torch INTERFACE ${MOE_TORCH_DIR}/lib)
target_link_libraries(moe_torch INTERFACE torch torch_cpu c10)
