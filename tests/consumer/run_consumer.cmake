# Drives one consumer test (cmake -P): [install this build to WORK_DIR/prefix,] then configure, build
# and run tests/consumer/project in WORK_DIR/build. Fails with the step's output on the first error.
# Inputs: MODE (find_package | add_subdirectory), SOURCE_DIR, BINARY_DIR, WORK_DIR, EXPECTED_VERSION,
# GENERATOR, CXX_COMPILER, CXX_FLAGS, BUILD_TYPE.
cmake_minimum_required(VERSION 3.25)

function(step what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "consumer (${MODE}): ${what} failed (${rc}):\n${out}")
  endif()
  string(STRIP "${out}" out)
  if(what STREQUAL "run")
    message(STATUS "consumer (${MODE}): run: ${out}")
  else()
    message(STATUS "consumer (${MODE}): ${what}: ok")
  endif()
endfunction()

file(REMOVE_RECURSE ${WORK_DIR})
if(MODE STREQUAL "find_package")
  step("install to ${WORK_DIR}/prefix" ${CMAKE_COMMAND} --install ${BINARY_DIR} --prefix ${WORK_DIR}/prefix)
  set(mode_args -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix)
elseif(MODE STREQUAL "add_subdirectory")
  set(mode_args -DITERLOCK_SOURCE_DIR=${SOURCE_DIR})
else()
  message(FATAL_ERROR "unknown MODE '${MODE}'")
endif()

step("configure" ${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/consumer/project -B ${WORK_DIR}/build
  -G ${GENERATOR} -DCMAKE_CXX_COMPILER=${CXX_COMPILER} -DCMAKE_CXX_FLAGS=${CXX_FLAGS}
  -DCMAKE_BUILD_TYPE=${BUILD_TYPE} -DCONSUMER_MODE=${MODE} -DEXPECTED_VERSION=${EXPECTED_VERSION}
  -DINSTALL_PREFIX=${WORK_DIR}/prefix ${mode_args})
step("build" ${CMAKE_COMMAND} --build ${WORK_DIR}/build)
step("run" ${WORK_DIR}/build/iterlock_consumer)
