# Configure-time check of torch's c10d (what src/medicosam/train/distributed.cpp
# builds on), run right after find_package(Torch):
#   - the c10d headers for the TCP store and Gloo must be present;
#   - a CUDA libtorch must also provide NCCL: USE_C10D_NCCL among its targets'
#     compile definitions (pip wheels and CUDA source builds put it on
#     torch_cuda) and ProcessGroupNCCL.hpp. Without them `train --device cuda
#     --nproc N` could not work, so configuring fails with the reason instead
#     of building a binary that refuses at run time. Set
#     -DMEDICOSAM_ALLOW_CUDA_WITHOUT_NCCL=ON to build anyway (single-process
#     CUDA training still works).
option(MEDICOSAM_ALLOW_CUDA_WITHOUT_NCCL "Build against a CUDA libtorch without NCCL" OFF)

set(_medicosam_c10d_defs "")
foreach(_t torch torch_cpu torch_cuda torch_cuda_cu torch_cuda_cpp)
  if(TARGET ${_t})
    get_target_property(_d ${_t} INTERFACE_COMPILE_DEFINITIONS)
    if(_d)
      list(APPEND _medicosam_c10d_defs ${_d})
    endif()
  endif()
endforeach()

# Sets `out` to the path of `header` under one of TORCH_INCLUDE_DIRS, or "".
function(_medicosam_find_torch_header out header)
  set(_path "")
  foreach(_dir ${TORCH_INCLUDE_DIRS})
    if(NOT _path AND EXISTS "${_dir}/${header}")
      set(_path "${_dir}/${header}")
    endif()
  endforeach()
  set(${out} "${_path}" PARENT_SCOPE)
endfunction()

foreach(_h torch/csrc/distributed/c10d/TCPStore.hpp torch/csrc/distributed/c10d/ProcessGroupGloo.hpp)
  _medicosam_find_torch_header(_found "${_h}")
  if(NOT _found)
    message(FATAL_ERROR "libtorch at ${Torch_DIR} lacks the c10d header ${_h} "
      "(TORCH_INCLUDE_DIRS: ${TORCH_INCLUDE_DIRS}); medicosam's data-parallel training needs "
      "a libtorch built with USE_DISTRIBUTED and Gloo")
  endif()
endforeach()
if(NOT "USE_C10D_GLOO" IN_LIST _medicosam_c10d_defs)
  message(FATAL_ERROR "libtorch at ${Torch_DIR} does not define USE_C10D_GLOO for its users: "
    "it was built without Gloo, which medicosam's data-parallel training uses on the CPU")
endif()

set(MEDICOSAM_TORCH_HAS_CUDA OFF)
if(TARGET torch_cuda OR TORCH_CUDA_LIBRARIES)
  set(MEDICOSAM_TORCH_HAS_CUDA ON)
endif()
set(MEDICOSAM_C10D_NCCL OFF)
if(MEDICOSAM_TORCH_HAS_CUDA)
  _medicosam_find_torch_header(_nccl_header torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp)
  if("USE_C10D_NCCL" IN_LIST _medicosam_c10d_defs AND _nccl_header)
    set(MEDICOSAM_C10D_NCCL ON)
  elseif(NOT MEDICOSAM_ALLOW_CUDA_WITHOUT_NCCL)
    if(NOT _nccl_header)
      set(_nccl_header "not found")
    endif()
    message(FATAL_ERROR "libtorch at ${Torch_DIR} has CUDA but no usable NCCL for c10d: "
      "USE_C10D_NCCL is not among the compile definitions its targets export "
      "(${_medicosam_c10d_defs}) or ProcessGroupNCCL.hpp is missing (${_nccl_header}). "
      "Multi-GPU training needs both; use a libtorch built with NCCL, or configure with "
      "-DMEDICOSAM_ALLOW_CUDA_WITHOUT_NCCL=ON to build without it.")
  endif()
endif()
message(STATUS "medicosam: torch c10d Gloo found; CUDA ${MEDICOSAM_TORCH_HAS_CUDA}, "
  "NCCL ${MEDICOSAM_C10D_NCCL}")
