# bench/lock_micro.cmake: the shard lock microbenchmark (Google Benchmark), a plain executable that is not
# part of iterlock-bench. Include it from a CMakeLists.txt that already defines iterlock::iterlock:
#     include(${iterlock_SOURCE_DIR}/bench/lock_micro.cmake)
# then run:  iterlock-lock-micro --benchmark_min_time=0.2
find_package(benchmark REQUIRED)
add_executable(iterlock-lock-micro ${CMAKE_CURRENT_LIST_DIR}/lock_micro.cpp)
target_link_libraries(iterlock-lock-micro PRIVATE iterlock::iterlock benchmark::benchmark)
