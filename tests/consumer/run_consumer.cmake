# Drives one consumer test (cmake -P): [install this build to WORK_DIR/prefix,] then configure, build
# and run tests/consumer/project in WORK_DIR/build; in pkg_config mode, compile and run its programs
# with the compiler and `pkg-config` alone. Fails with the step's output on the first error.
# Inputs: MODE (find_package | add_subdirectory | pkg_config), SOURCE_DIR, BINARY_DIR, WORK_DIR,
# EXPECTED_VERSION, GENERATOR, CXX_COMPILER, CXX_FLAGS, BUILD_TYPE, PKG_CONFIG, WITH_PROMETHEUS.
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

# pkg-config's answer for `package` (--cflags or --libs) against the scratch prefix, as a list.
function(pc_flags out package what)
  execute_process(
    COMMAND ${CMAKE_COMMAND} -E env PKG_CONFIG_PATH=${WORK_DIR}/prefix/share/pkgconfig
      ${PKG_CONFIG} ${what} ${package}
    RESULT_VARIABLE rc OUTPUT_VARIABLE flags ERROR_VARIABLE err OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "consumer (${MODE}): pkg-config ${what} ${package} failed (${rc}):\n${err}")
  endif()
  separate_arguments(flags UNIX_COMMAND "${flags}")
  set(${out} ${flags} PARENT_SCOPE)
endfunction()

# Compiles SOURCE_DIR/tests/consumer/project/<source> into WORK_DIR/<name> with only the compiler, the
# build's flags and pkg-config's for `package`, then runs it.
function(pc_program name source package)
  pc_flags(cflags ${package} --cflags)
  pc_flags(libs ${package} --libs)
  separate_arguments(user_flags UNIX_COMMAND "${CXX_FLAGS}")
  step("compile ${name} (pkg-config ${package})" ${CXX_COMPILER} -std=c++20 ${user_flags} ${cflags}
    ${SOURCE_DIR}/tests/consumer/project/${source} -o ${WORK_DIR}/${name} ${libs})
  step("run" ${WORK_DIR}/${name})
endfunction()

file(REMOVE_RECURSE ${WORK_DIR})
if(MODE STREQUAL "pkg_config")
  step("install to ${WORK_DIR}/prefix" ${CMAKE_COMMAND} --install ${BINARY_DIR} --prefix ${WORK_DIR}/prefix)
  execute_process(
    COMMAND ${CMAKE_COMMAND} -E env PKG_CONFIG_PATH=${WORK_DIR}/prefix/share/pkgconfig
      ${PKG_CONFIG} --modversion iterlock
    OUTPUT_VARIABLE version OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(NOT version STREQUAL EXPECTED_VERSION)
    message(FATAL_ERROR "pkg-config reports iterlock version '${version}', expected ${EXPECTED_VERSION}")
  endif()
  pc_program(iterlock_consumer main.cpp iterlock)
  if(WITH_PROMETHEUS)
    pc_program(iterlock_prometheus_consumer prometheus_main.cpp iterlock-prometheus)
  endif()
  return()
elseif(MODE STREQUAL "find_package")
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
