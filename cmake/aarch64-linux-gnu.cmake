# Cross-compiling toolchain for aarch64 Linux (Debian's g++-aarch64-linux-gnu), with the test executables run
# under qemu-user (Debian's qemu-user, binary qemu-aarch64) on any other host.
#
# The tests link dynamically against the cross glibc in /usr/aarch64-linux-gnu (libc6-dev-arm64-cross), which
# qemu-aarch64 -L finds; ctest and gtest_discover_tests both go through CMAKE_CROSSCOMPILING_EMULATOR.
# -march comes from the preset (CMAKE_CXX_FLAGS), so one toolchain serves the LL/SC and the LSE builds.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(ITERLOCK_CROSS_SYSROOT /usr/aarch64-linux-gnu CACHE PATH "aarch64 libraries that qemu-aarch64 -L loads")

find_program(ITERLOCK_AARCH64_CXX NAMES aarch64-linux-gnu-g++ aarch64-linux-gnu-g++-12 REQUIRED)
find_program(ITERLOCK_AARCH64_CC NAMES aarch64-linux-gnu-gcc aarch64-linux-gnu-gcc-12)
set(CMAKE_CXX_COMPILER ${ITERLOCK_AARCH64_CXX})
if(ITERLOCK_AARCH64_CC)
  set(CMAKE_C_COMPILER ${ITERLOCK_AARCH64_CC})
endif()

find_program(ITERLOCK_QEMU_AARCH64 NAMES qemu-aarch64 qemu-aarch64-static REQUIRED)
set(CMAKE_CROSSCOMPILING_EMULATOR ${ITERLOCK_QEMU_AARCH64} -L ${ITERLOCK_CROSS_SYSROOT})

# Libraries and headers of the target only; programs (cmake, ninja, qemu) of the host.
set(CMAKE_FIND_ROOT_PATH ${ITERLOCK_CROSS_SYSROOT})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
