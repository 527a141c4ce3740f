# Helpers shared by every module's CMakeLists.
#
# Torch headers take ~20 s per translation unit to parse, so every target that
# uses torch shares one precompiled header built by `medicosam_torch_pch`.

set(MEDICOSAM_SHARED_DIR "${CMAKE_SOURCE_DIR}/../shared" CACHE PATH
    "Folder with the reference fixtures and data (../shared next to the checkout)")

add_library(medicosam_torch_pch STATIC "${CMAKE_SOURCE_DIR}/cmake/torch_pch.cpp")
target_link_libraries(medicosam_torch_pch PUBLIC ${TORCH_LIBRARIES})
target_compile_options(medicosam_torch_pch PUBLIC ${TORCH_CXX_FLAGS})
target_precompile_headers(medicosam_torch_pch PRIVATE <torch/torch.h>)

# medicosam_use_torch(target): link torch and reuse the shared precompiled header.
function(medicosam_use_torch target)
  target_link_libraries(${target} PUBLIC medicosam_torch_pch)
  target_precompile_headers(${target} REUSE_FROM medicosam_torch_pch)
endfunction()

# medicosam_add_test(name SOURCES ... LIBS ... [TORCH]): one gtest executable,
# registered with CTest; tests find ../shared through MEDICOSAM_SHARED_DIR.
function(medicosam_add_test name)
  cmake_parse_arguments(T "TORCH" "" "SOURCES;LIBS;LABELS" ${ARGN})
  add_executable(${name} ${T_SOURCES})
  # medicosam_test_main (tests/common/test_main.cpp) replaces gtest_main: in CI
  # (MEDICOSAM_FAIL_ON_SKIP=1 / CI=true) a skipped test fails.
  target_link_libraries(${name} PRIVATE ${T_LIBS} GTest::gtest medicosam_test_main GTest::gmock)
  if(T_TORCH)
    medicosam_use_torch(${name})
  endif()
  target_compile_definitions(${name} PRIVATE
    MEDICOSAM_SHARED_DIR="${MEDICOSAM_SHARED_DIR}"
    MEDICOSAM_SOURCE_DIR="${CMAKE_SOURCE_DIR}"
    MEDICOSAM_BINARY_DIR="${CMAKE_BINARY_DIR}")
  # The CLI's path is spelled out rather than taken from the target, so a test
  # target does not depend on (and wait for) the CLI being linkable.
  gtest_discover_tests(${name} DISCOVERY_TIMEOUT 120
    PROPERTIES LABELS "${T_LABELS}" ENVIRONMENT "MEDICOSAM_CLI=${CMAKE_BINARY_DIR}/apps/medicosam/medicosam")
endfunction()

# What medicosam_io links against (ITK readers, DCMTK for DICOM SEG, zlib, libpng,
# libjpeg). A macro, so the imported targets land in the calling directory: io
# itself, and python/ for its position-independent copies.
macro(medicosam_find_io_dependencies)
  find_package(ITK REQUIRED COMPONENTS
    ITKCommon ITKIOImageBase ITKIONIFTI ITKIONRRD ITKIOMeta ITKIOGDCM
    ITKIOPNG ITKIOTIFF ITKIOBMP)
  find_package(DCMTK REQUIRED CONFIG)
  find_package(ZLIB REQUIRED)
  find_package(PNG REQUIRED)
  find_package(JPEG REQUIRED)
endmacro()
