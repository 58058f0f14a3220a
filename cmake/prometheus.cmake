# iterlock::prometheus: the Prometheus exporter (include/iterlock/prometheus.hpp) as its own target, so only
# programs that export metrics link prometheus-cpp (Debian: prometheus-cpp-dev). Header-only like iterlock
# itself: an INTERFACE target that adds prometheus-cpp's pull exposer and core.
# Included from the root CMakeLists.txt after the iterlock target; it defines nothing (and says so) when
# prometheus-cpp is not installed, so the core library never depends on it. Consumers check
# `if(TARGET iterlock::prometheus)`.
find_package(prometheus-cpp CONFIG QUIET)
if(prometheus-cpp_FOUND AND TARGET prometheus-cpp::pull)
  add_library(iterlock_prometheus INTERFACE)
  add_library(iterlock::prometheus ALIAS iterlock_prometheus)
  set_target_properties(iterlock_prometheus PROPERTIES EXPORT_NAME prometheus)
  target_link_libraries(iterlock_prometheus INTERFACE iterlock::iterlock prometheus-cpp::pull prometheus-cpp::core)
  # Installed in its own export set: iterlockConfig.cmake loads it only when prometheus-cpp is found there.
  install(TARGETS iterlock_prometheus EXPORT iterlockPrometheusTargets)
  install(EXPORT iterlockPrometheusTargets NAMESPACE iterlock::
          DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/iterlock)
  # pkg-config: `pkg-config --cflags --libs iterlock-prometheus` (Requires: iterlock and prometheus-cpp's).
  configure_file(${CMAKE_CURRENT_LIST_DIR}/iterlock-prometheus.pc.in ${PROJECT_BINARY_DIR}/iterlock-prometheus.pc
                 @ONLY)
  install(FILES ${PROJECT_BINARY_DIR}/iterlock-prometheus.pc DESTINATION ${ITERLOCK_PC_DIR})
else()
  message(STATUS "iterlock: prometheus-cpp not found; iterlock::prometheus, its tests and iterlock-demo's "
                 "--metrics-port are not built (Debian: apt-get install prometheus-cpp-dev)")
endif()
