// Releasing the GIL around a kernel, safely at interpreter exit.
//
// CPython 3.11-3.13 end a daemon thread that asks for the GIL back while the interpreter is
// finalizing with pthread_exit(), which glibc implements as a forced stack unwinding. Coming
// out of py::gil_scoped_release's destructor (implicitly noexcept) that unwinding calls
// std::terminate: "terminate called without an active exception" and SIGABRT at exit, whenever
// a daemon thread is inside a kernel (or waiting for the GIL after one) as the main thread
// exits. Here the unwinding is caught where it starts, inside the destructor, and the thread
// sleeps there until the process ends: it must not run Python again, and unwinding further
// would drop Python references without the GIL. (Python 3.14 itself parks such threads.)
#pragma once

#include <Python.h>

#include <chrono>
#include <thread>

namespace logitops {

class ReleaseGil {
 public:
  ReleaseGil() : state_(PyEval_SaveThread()) {}
  ReleaseGil(const ReleaseGil&) = delete;
  ReleaseGil& operator=(const ReleaseGil&) = delete;

  ~ReleaseGil() {
    try {
      PyEval_RestoreThread(state_);
    } catch (...) {  // only the forced unwinding of pthread_exit can come out of it
      // Leaving this handler would resume the unwinding (or abort): never leave it.
      for (;;) std::this_thread::sleep_for(std::chrono::hours(1));
    }
  }

 private:
  PyThreadState* state_;
};

}  // namespace logitops
