// What every binding file shares: dtype dispatch, array checks and output allocation.
// Bindings convert, check what the kernels rely on, and run them over the thread pool; the
// Python layer owns the API (argument policy, reductions, error wording) and has already shaped
// the arrays (C-contiguous, aligned, one float dtype). These checks guard that contract: a
// caller that breaks it gets an exception, never an out-of-bounds access.
#pragma once

#include <pybind11/native_enum.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <string>
#include <vector>

#include "dispatch.h"
#include "gil.h"
#include "kernels/loss_op.h"
#include "parallel.h"
#include "result_cache.h"

namespace logitops {
namespace py = pybind11;

// Calls f(T{}) with T the float type of `x`; TypeError naming `name` otherwise.
template <class F>
decltype(auto) by_float_dtype(const py::array& x, const char* name, F&& f) {
  const py::dtype dt = x.dtype();
  if (dt.is(py::dtype::of<float>()) || (dt.kind() == 'f' && dt.itemsize() == 4)) return f(float{});
  if (dt.is(py::dtype::of<double>()) || (dt.kind() == 'f' && dt.itemsize() == 8)) return f(double{});
  throw py::type_error(std::string(name) + " must be float32 or float64, got " +
                       py::str(static_cast<py::object>(dt)).cast<std::string>());
}

// A C-contiguous, aligned array of dtype T; returns its data pointer. (The kernels read T
// through T*: unaligned data, legal in NumPy, is copied by the Python layer first.)
template <class T>
const T* cdata(const py::array& a, const char* name) {
  if (!py::isinstance<py::array_t<T>>(a))  // equivalent dtype: native byte order, same kind and size
    throw py::type_error(std::string(name) + " must have dtype " +
                         py::str(static_cast<py::object>(py::dtype::of<T>())).cast<std::string>());
  if (!(a.flags() & py::array::c_style)) throw py::value_error(std::string(name) + " must be C-contiguous");
  if (!(a.flags() & py::detail::npy_api::NPY_ARRAY_ALIGNED_))
    throw py::value_error(std::string(name) + " must be aligned");
  return static_cast<const T*>(a.data());
}

// The array of a row function: C-contiguous (rows, cols) of dtype T.
template <class T>
const T* rows_data(const py::array& a, const char* name) {
  if (a.ndim() != 2) throw py::value_error(std::string(name) + " must be 2-D (rows, cols)");
  return cdata<T>(a, name);
}

// A writable C-contiguous array of dtype T with exactly `shape`.
template <class T>
T* out_data(py::array& a, const std::vector<py::ssize_t>& shape, const char* name) {
  cdata<T>(a, name);
  if (!a.writeable()) throw py::value_error(std::string(name) + " must be writable");
  if (a.ndim() != static_cast<py::ssize_t>(shape.size()) || !std::equal(shape.begin(), shape.end(), a.shape()))
    throw py::value_error(std::string(name) + " has the wrong shape");
  return static_cast<T*>(a.mutable_data());
}

// An optional argument: null for None, else the data of a C-contiguous array of dtype T and
// exactly n elements.
template <class T>
const T* optional_data(const py::object& obj, int64_t n, const char* name) {
  if (obj.is_none()) return nullptr;
  const py::array a = obj.cast<py::array>();
  const T* p = cdata<T>(a, name);
  if (static_cast<int64_t>(a.size()) != n) throw py::value_error(std::string(name) + " has the wrong size");
  return p;
}

// A new C-contiguous result array. From kResultCacheMinBytes on its memory comes from the result
// cache (result_cache.h) and its base is a capsule that gives the memory back when NumPy frees
// the array (capsule destructors run with the GIL; the cache takes its own lock). Its contents
// are not zeroed: the kernels write every element.
inline void release_result_capsule(PyObject* capsule) {
  void* p = PyCapsule_GetPointer(capsule, "logitops.result");
  result_release(p, reinterpret_cast<size_t>(PyCapsule_GetContext(capsule)));
}

inline py::array new_array_of(const py::dtype& dt, const std::vector<py::ssize_t>& shape) {
  size_t bytes = static_cast<size_t>(dt.itemsize());
  for (py::ssize_t s : shape) bytes *= static_cast<size_t>(s);
  size_t capacity = 0;
  void* p = bytes >= kResultCacheMinBytes ? result_acquire(bytes, &capacity) : nullptr;
  if (!p) return py::array(dt, shape);  // small, or the cache is off: NumPy's allocator
  PyObject* raw = PyCapsule_New(p, "logitops.result", &release_result_capsule);
  if (!raw) {
    result_release(p, capacity);
    throw py::error_already_set();
  }
  const py::object owner = py::reinterpret_steal<py::object>(raw);
  PyCapsule_SetContext(raw, reinterpret_cast<void*>(capacity));
  return py::array(dt, shape, p, owner);  // (a failure here drops the capsule: memory given back)
}

template <class T>
py::array_t<T> new_array(const std::vector<py::ssize_t>& shape) {
  return py::reinterpret_steal<py::array_t<T>>(new_array_of(py::dtype::of<T>(), shape).release());
}

inline int64_t dim(const py::array& a, int i) { return static_cast<int64_t>(a.shape(i)); }

// A LossOp or Reduction from its code. The bindings take the codes as plain ints (an IntEnum
// argument costs a few hundred ns a call to convert); the Python layer passes the members of
// the exported enums below, so neither side writes the numbers down.
inline LossOp loss_op(int code) {
  if (code < 0 || code > static_cast<int>(LossOp::loss_and_grad)) throw py::value_error("op: unknown LossOp code");
  return static_cast<LossOp>(code);
}
inline Reduction reduction_of(int code) {
  if (code < 0 || code > static_cast<int>(Reduction::sum)) throw py::value_error("reduction: unknown Reduction code");
  return static_cast<Reduction>(code);
}

// LossOp, Reduction: the loss families' shared words, as Python IntEnums.
inline void register_loss_words(py::module_& m) {
  py::native_enum<LossOp>(m, "LossOp", "enum.IntEnum")
      .value("loss", LossOp::loss)
      .value("grad_input", LossOp::grad_input)
      .value("grad_target", LossOp::grad_target)
      .value("loss_and_grad", LossOp::loss_and_grad)
      .finalize();
  py::native_enum<Reduction>(m, "Reduction", "enum.IntEnum")
      .value("none", Reduction::none)
      .value("mean", Reduction::mean)
      .value("sum", Reduction::sum)
      .finalize();
}

// Each cpp/bind/bind_<family>.cpp defines register_<family>(m); module.cpp calls them all.

}  // namespace logitops
