# iterlock::etcd: the etcd v3 client and iterlock::etcd::map (include/iterlock/etcd/, src/etcd/), a compiled
# library on gRPC and protobuf. The header-only core gains no dependency: only programs that link
# iterlock::etcd need gRPC.
#
# ITERLOCK_ETCD=AUTO (default) builds it when everything below is found, ON fails the configure when
# something is missing, OFF never builds it. Needs: gRPC's CMake package (Debian libgrpc++-dev), protobuf
# (libprotobuf-dev, protobuf-compiler), grpc_cpp_plugin (protobuf-compiler-grpc), and etcd's API protos with
# their imports: golang-etcd-server-dev installs etcd's under ITERLOCK_ETCD_PROTO_ROOT/go.etcd.io/etcd,
# golang-github-gogo-protobuf-dev gogoproto/gogo.proto and golang-github-grpc-ecosystem-grpc-gateway-dev the
# googleapis annotations. The C++ stubs are generated in the build tree at build time (never committed).
set(ITERLOCK_ETCD AUTO CACHE STRING "build iterlock::etcd (AUTO: when gRPC, protobuf and etcd's protos are found)")
set_property(CACHE ITERLOCK_ETCD PROPERTY STRINGS AUTO ON OFF)
set(ITERLOCK_ETCD_PROTO_ROOT /usr/share/gocode/src CACHE PATH "GOPATH src folder holding etcd's .proto files")

set(ITERLOCK_ETCD_FOUND OFF)
if(NOT ITERLOCK_ETCD STREQUAL "OFF")
  set(_missing "")
  find_package(Protobuf QUIET)
  find_package(gRPC CONFIG QUIET)
  find_program(ITERLOCK_GRPC_CPP_PLUGIN grpc_cpp_plugin)
  set(_root ${ITERLOCK_ETCD_PROTO_ROOT})
  # Each import root, found by the file it must hold.
  find_path(ITERLOCK_ETCD_PROTO_DIR etcd/etcdserver/etcdserverpb/rpc.proto PATHS ${_root}/go.etcd.io NO_DEFAULT_PATH)
  find_path(ITERLOCK_GOGO_PROTO_DIR gogoproto/gogo.proto PATHS ${_root}/github.com/gogo/protobuf NO_DEFAULT_PATH)
  find_path(ITERLOCK_GOOGLEAPIS_PROTO_DIR google/api/annotations.proto
            PATHS ${_root}/github.com/grpc-ecosystem/grpc-gateway/third_party/googleapis NO_DEFAULT_PATH)
  if(NOT Protobuf_FOUND OR NOT Protobuf_PROTOC_EXECUTABLE)
    list(APPEND _missing "protobuf (libprotobuf-dev, protobuf-compiler)")
  endif()
  if(NOT gRPC_FOUND)
    list(APPEND _missing "gRPC (libgrpc++-dev)")
  endif()
  if(NOT ITERLOCK_GRPC_CPP_PLUGIN)
    list(APPEND _missing "grpc_cpp_plugin (protobuf-compiler-grpc)")
  endif()
  if(NOT ITERLOCK_ETCD_PROTO_DIR OR NOT ITERLOCK_GOGO_PROTO_DIR OR NOT ITERLOCK_GOOGLEAPIS_PROTO_DIR)
    list(APPEND _missing "etcd's protos and their imports under ${_root} (golang-etcd-server-dev)")
  endif()
  if(_missing)
    if(ITERLOCK_ETCD STREQUAL "ON")
      message(FATAL_ERROR "ITERLOCK_ETCD=ON but missing: ${_missing}")
    endif()
    message(STATUS "iterlock: iterlock::etcd not built; missing: ${_missing}")
  else()
    set(ITERLOCK_ETCD_FOUND ON)
  endif()
endif()
if(NOT ITERLOCK_ETCD_FOUND)
  return()
endif()

# The stubs: messages for every proto etcd's rpc.proto reaches, services for rpc.proto alone.
set(_gen ${PROJECT_BINARY_DIR}/etcd_proto)
set(_protos etcd/etcdserver/etcdserverpb/rpc.proto etcd/mvcc/mvccpb/kv.proto etcd/auth/authpb/auth.proto
            gogoproto/gogo.proto google/api/annotations.proto google/api/http.proto)
set(_srcs "")
set(_deps "")
foreach(p ${_protos})
  string(REGEX REPLACE "\\.proto$" "" stem ${p})
  list(APPEND _srcs ${_gen}/${stem}.pb.cc ${_gen}/${stem}.pb.h)
endforeach()
list(APPEND _srcs ${_gen}/etcd/etcdserver/etcdserverpb/rpc.grpc.pb.cc ${_gen}/etcd/etcdserver/etcdserverpb/rpc.grpc.pb.h)
list(APPEND _deps ${ITERLOCK_ETCD_PROTO_DIR}/etcd/etcdserver/etcdserverpb/rpc.proto
                  ${ITERLOCK_ETCD_PROTO_DIR}/etcd/mvcc/mvccpb/kv.proto
                  ${ITERLOCK_ETCD_PROTO_DIR}/etcd/auth/authpb/auth.proto)
set(_inc -I${ITERLOCK_ETCD_PROTO_DIR} -I${ITERLOCK_GOGO_PROTO_DIR} -I${ITERLOCK_GOOGLEAPIS_PROTO_DIR})
foreach(d ${Protobuf_INCLUDE_DIRS})
  list(APPEND _inc -I${d})
endforeach()
add_custom_command(
  OUTPUT ${_srcs}
  COMMAND ${CMAKE_COMMAND} -E make_directory ${_gen}
  COMMAND ${Protobuf_PROTOC_EXECUTABLE} ${_inc} --cpp_out=${_gen} ${_protos}
  COMMAND ${Protobuf_PROTOC_EXECUTABLE} ${_inc} --grpc_out=${_gen}
          --plugin=protoc-gen-grpc=${ITERLOCK_GRPC_CPP_PLUGIN} etcd/etcdserver/etcdserverpb/rpc.proto
  DEPENDS ${_deps}
  COMMENT "iterlock::etcd: generating etcd's gRPC stubs with protoc and grpc_cpp_plugin"
  VERBATIM)

# As a subproject (add_subdirectory) the targets are built only when the parent links iterlock::etcd, and
# not installed: a parent that only uses the header-only core pays nothing for them.
set(_exclude "")
if(NOT ITERLOCK_TOP_LEVEL)
  set(_exclude EXCLUDE_FROM_ALL)
endif()

# The stubs as an object library (compiled without the project's warnings: generated code).
add_library(iterlock_etcd_proto OBJECT ${_exclude} ${_srcs})
target_include_directories(iterlock_etcd_proto PUBLIC $<BUILD_INTERFACE:${_gen}>)
target_link_libraries(iterlock_etcd_proto PUBLIC protobuf::libprotobuf gRPC::grpc++)
set_target_properties(iterlock_etcd_proto PROPERTIES POSITION_INDEPENDENT_CODE ON)

add_library(iterlock_etcd STATIC ${_exclude}
  ${PROJECT_SOURCE_DIR}/src/etcd/client.cpp
  ${PROJECT_SOURCE_DIR}/src/etcd/error.cpp
  ${PROJECT_SOURCE_DIR}/src/etcd/mirror_core.cpp
  ${PROJECT_SOURCE_DIR}/src/etcd/iteration_lock.cpp
  $<TARGET_OBJECTS:iterlock_etcd_proto>)
add_library(iterlock::etcd ALIAS iterlock_etcd)
set_target_properties(iterlock_etcd PROPERTIES EXPORT_NAME etcd OUTPUT_NAME iterlock_etcd
                                               POSITION_INDEPENDENT_CODE ON)
target_compile_features(iterlock_etcd PUBLIC cxx_std_20)
target_include_directories(iterlock_etcd PRIVATE ${_gen})
target_link_libraries(iterlock_etcd PUBLIC iterlock::iterlock PRIVATE gRPC::grpc++ protobuf::libprotobuf)
target_compile_options(iterlock_etcd PRIVATE -O2)
if(NOT ITERLOCK_TOP_LEVEL)
  return()
endif()
# Its own export set: iterlockConfig.cmake loads it (the `etcd` component) only when gRPC is found there.
install(TARGETS iterlock_etcd EXPORT iterlockEtcdTargets ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(EXPORT iterlockEtcdTargets NAMESPACE iterlock:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/iterlock)
