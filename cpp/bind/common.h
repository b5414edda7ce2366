// What every binding file shares: dtype dispatch, array checks and output allocation.
// Bindings only convert and validate; the Python layer has already shaped the arrays
// (C-contiguous, one float dtype), and these checks guard that contract.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <string>
#include <vector>

#include "dispatch.h"
#include "gil.h"
#include "parallel.h"

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

// A C-contiguous array of dtype T; returns its data pointer.
template <class T>
const T* cdata(const py::array& a, const char* name) {
  if (!py::isinstance<py::array_t<T>>(a))  // equivalent dtype: native byte order, same kind and size
    throw py::type_error(std::string(name) + " must have dtype " +
                         py::str(static_cast<py::object>(py::dtype::of<T>())).cast<std::string>());
  if (!(a.flags() & py::array::c_style))
    throw py::value_error(std::string(name) + " must be C-contiguous");
  return static_cast<const T*>(a.data());
}

// A writable C-contiguous array of dtype T with exactly `shape`.
template <class T>
T* out_data(py::array& a, const std::vector<py::ssize_t>& shape, const char* name) {
  cdata<T>(a, name);
  if (!a.writeable()) throw py::value_error(std::string(name) + " must be writable");
  if (a.ndim() != static_cast<py::ssize_t>(shape.size()) ||
      !std::equal(shape.begin(), shape.end(), a.shape()))
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

template <class T>
py::array_t<T> new_array(const std::vector<py::ssize_t>& shape) {
  return py::array_t<T>(shape);
}

inline int64_t dim(const py::array& a, int i) { return static_cast<int64_t>(a.shape(i)); }

void register_primitives(py::module_& m);
void register_binary(py::module_& m);
void register_cross_entropy(py::module_& m);

}  // namespace logitops
