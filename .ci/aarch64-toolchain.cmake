# Cross-compiling logitops for aarch64 Linux with Debian's g++-aarch64-linux-gnu (used by
# .ci/aarch64). LOGITOPS_AARCH64_ROOT is an arm64 Debian tree (the script's debootstrap) whose
# Python headers the extension is compiled against; the Python interpreter CMake runs is the
# host's (the same 3.11 minor version), so the extension's suffix is set here for aarch64.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
set(CMAKE_CXX_COMPILER_TARGET aarch64-linux-gnu)

# (try_compile projects read the toolchain file again: they get the value passed on.)
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES LOGITOPS_AARCH64_ROOT)
if(NOT LOGITOPS_AARCH64_ROOT)
  message(FATAL_ERROR "set LOGITOPS_AARCH64_ROOT to the arm64 root tree (.ci/aarch64 makes it)")
endif()
# The root's Python headers (its pyconfig.h is the aarch64 one, found through the root's
# /usr/include after the cross compiler's own system headers).
set(Python_INCLUDE_DIR "${LOGITOPS_AARCH64_ROOT}/usr/include/python3.11" CACHE PATH "" FORCE)
set(CMAKE_CXX_FLAGS_INIT "-idirafter ${LOGITOPS_AARCH64_ROOT}/usr/include")
set(Python_SOABI "cpython-311-aarch64-linux-gnu" CACHE STRING "" FORCE)
set(PYTHON_MODULE_EXT_SUFFIX ".cpython-311-aarch64-linux-gnu.so" CACHE STRING "" FORCE)
set(PYTHON_MODULE_EXTENSION ".cpython-311-aarch64-linux-gnu.so" CACHE STRING "" FORCE)

# Programs (python, cmake's helpers) are the host's; nothing else is searched for.
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(PYTHON_MODULE_DEBUG_POSTFIX "" CACHE STRING "" FORCE)
