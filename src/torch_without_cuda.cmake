# LibTorch's CPU libraries from the PyPI wheel where no CUDA toolkit is installed.
#
# The wheel is built with CUDA, and its CMake package (TorchConfig -> Caffe2Config) stops
# with "Your installed Caffe2 version uses CUDA but I cannot find the CUDA libraries" on a
# machine without a toolkit (a plain Debian 12 machine, the CPU container image), although
# a CPU build links only torch_cpu and c10, which load without one. This reads the wheel's
# own target file instead of its package, and sets what the package would: Torch_FOUND,
# Torch_VERSION, TORCH_INCLUDE_DIRS, TORCH_CXX_FLAGS.
#
# Input: TRIAGE_TORCH_PREFIX, the wheel's CMake prefix (torch/share/cmake), or the wheel
# on CMAKE_PREFIX_PATH (a consumer of the installed package).
if(TARGET torch_cpu)  # LibTorch's own package was loaded already
  return()
endif()
find_file(TRIAGE_CAFFE2_TARGETS Caffe2Targets.cmake
  PATHS ${TRIAGE_TORCH_PREFIX} ${CMAKE_PREFIX_PATH} PATH_SUFFIXES Caffe2 NO_DEFAULT_PATH)
if(NOT TRIAGE_CAFFE2_TARGETS)
  message(FATAL_ERROR "LibTorch not found: no Caffe2/Caffe2Targets.cmake under "
    "${TRIAGE_TORCH_PREFIX} ${CMAKE_PREFIX_PATH}; run ./launch/setup, or put LibTorch's CMake "
    "prefix on CMAKE_PREFIX_PATH")
endif()
# Targets that torch_cpu names and Caffe2Config would define: empty here, because the wheel
# carries protobuf and MKL inside libtorch_cpu.so.
foreach(dependency protobuf::libprotobuf caffe2::mkl)
  if(NOT TARGET ${dependency})
    add_library(${dependency} INTERFACE IMPORTED)
  endif()
endforeach()
include(${TRIAGE_CAFFE2_TARGETS})

get_filename_component(triage_torch_cmake_dir "${TRIAGE_CAFFE2_TARGETS}" DIRECTORY)
get_filename_component(triage_torch_root "${triage_torch_cmake_dir}/../../.." ABSOLUTE)
file(STRINGS "${triage_torch_cmake_dir}/../Torch/TorchConfigVersion.cmake" triage_torch_version_line
  REGEX "^set\\(PACKAGE_VERSION ")
string(REGEX MATCH "[0-9]+\\.[0-9]+\\.[0-9]+" Torch_VERSION "${triage_torch_version_line}")
set(Torch_FOUND TRUE)
set(TORCH_INCLUDE_DIRS ${triage_torch_root}/include
                       ${triage_torch_root}/include/torch/csrc/api/include)
set(TORCH_CXX_FLAGS "")
set(TRIAGE_TORCH_CPU_ONLY TRUE)
