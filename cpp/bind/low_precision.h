// float16 and bfloat16 in the bindings: every kernel stays float32/float64, and a call on
// 16-bit arrays runs the float32 kernels over small float32 blocks that this header fills and
// drains. Inside each parallel chunk the binding cuts its range into blocks (a few thousand
// elements, or one row), widens the block's inputs into thread-local float32 buffers, runs the
// float32 kernel on them and rounds the array results (gradients, softmax, per-sample losses)
// back into the 16-bit output, once. No float32 copy of a whole input ever exists; loss sums
// stay the kernels' float64 sums. The blocks depend only on the chunk (so on the shape), never
// on the thread count: results are bit-identical for any number of threads.
//
// bfloat16 is ml_dtypes.bfloat16 (kind 'V', itemsize 2, a type number assigned when ml_dtypes
// registers it): recognised by its dtype, read as its bits; ml_dtypes is never imported.
// A call's 16-bit arrays all have one format (the Python layer casts mixed ones, as torch
// promotes them); small float arguments (class weights) arrive as float32.
#pragma once

#include <algorithm>
#include <string>
#include <type_traits>
#include <vector>

#include "bind/common.h"
#include "kernels/convert.h"

namespace logitops {

// Storage tags of the 16-bit formats (float and double stand for themselves).
struct Half {
  static constexpr LowFormat format = LowFormat::f16;
};
struct BFloat16 {
  static constexpr LowFormat format = LowFormat::bf16;
};
template <class St>
inline constexpr bool is_low_v = std::is_same_v<St, Half> || std::is_same_v<St, BFloat16>;
// The type a storage type is computed in.
template <class St>
using compute_t = std::conditional_t<is_low_v<St>, float, St>;

inline bool is_bfloat16(const py::dtype& dt) {
  return dt.kind() == 'V' && dt.itemsize() == 2 && py::str(dt.attr("name")).cast<std::string>() == "bfloat16";
}

// Calls f(St{}) with St the storage of `x`: float, double, Half or BFloat16; TypeError naming
// `name` otherwise.
template <class F>
decltype(auto) by_storage(const py::array& x, const char* name, F&& f) {
  const py::dtype dt = x.dtype();
  if (dt.kind() == 'f') {
    if (dt.itemsize() == 4) return f(float{});
    if (dt.itemsize() == 8) return f(double{});
    if (dt.itemsize() == 2) return f(Half{});
  } else if (is_bfloat16(dt)) {
    return f(BFloat16{});
  }
  throw py::type_error(std::string(name) + " must be float32, float64, float16 or bfloat16, got " +
                       py::str(static_cast<py::object>(dt)).cast<std::string>());
}

// The bits of a C-contiguous, aligned array of the call's 16-bit dtype `fmt`.
inline const uint16_t* low_cdata(const py::array& a, const py::dtype& fmt, const char* name) {
  const py::dtype dt = a.dtype();
  if (!py::detail::npy_api::get().PyArray_EquivTypes_(dt.ptr(), fmt.ptr()))
    throw py::type_error(std::string(name) + " must have dtype " +
                         py::str(static_cast<py::object>(fmt)).cast<std::string>());
  if (!(a.flags() & py::array::c_style)) throw py::value_error(std::string(name) + " must be C-contiguous");
  if (!(a.flags() & py::detail::npy_api::NPY_ARRAY_ALIGNED_))
    throw py::value_error(std::string(name) + " must be aligned");
  return static_cast<const uint16_t*>(a.data());
}

// optional_data (common.h) for 16-bit arrays: null for None, else exactly n elements.
inline const uint16_t* optional_low(const py::object& obj, int64_t n, const py::dtype& fmt, const char* name) {
  if (obj.is_none()) return nullptr;
  const py::array a = obj.cast<py::array>();
  const uint16_t* p = low_cdata(a, fmt, name);
  if (static_cast<int64_t>(a.size()) != n) throw py::value_error(std::string(name) + " has the wrong size");
  return p;
}

// out_data (common.h) for 16-bit arrays.
inline uint16_t* low_out(py::array& a, const std::vector<py::ssize_t>& shape, const py::dtype& fmt, const char* name) {
  low_cdata(a, fmt, name);
  if (!a.writeable()) throw py::value_error(std::string(name) + " must be writable");
  if (a.ndim() != static_cast<py::ssize_t>(shape.size()) || !std::equal(shape.begin(), shape.end(), a.shape()))
    throw py::value_error(std::string(name) + " has the wrong shape");
  return static_cast<uint16_t*>(a.mutable_data());
}

// A new result array of storage St shaped `shape`; 16-bit ones take the dtype of `like`.
template <class St>
py::array new_result(const std::vector<py::ssize_t>& shape, const py::array& like) {
  if constexpr (is_low_v<St>)
    return py::array(like.dtype(), shape);
  else
    return new_array<St>(shape);
}

// Elements per float32 block (64 kB a buffer: the block and the kernel's passes over it stay in
// L2); a row longer than that is one block.
constexpr int64_t kLowBlock = 16384;
inline int64_t low_rows_per_block(int64_t cols) { return std::max<int64_t>(1, kLowBlock / std::max<int64_t>(cols, 1)); }

// Buffer `slot` of this thread, at least n floats. Kept for the thread's life: the pool's
// threads reuse theirs from call to call (a block is at most one row or kLowBlock elements).
inline float* block_buffer(int slot, int64_t n) {
  thread_local std::vector<float> buffers[6];
  std::vector<float>& b = buffers[slot];
  if (static_cast<int64_t>(b.size()) < n) b.resize(static_cast<size_t>(n));
  return b.data();
}

// The conversions of one call's format, on the ISA active when the call started.
class LowIo {
 public:
  explicit LowIo(LowFormat f)
      : to_(LO_ACTIVE_TABLE(convert_table).to_f32[static_cast<int>(f)]),
        from_(LO_ACTIVE_TABLE(convert_table).from_f32[static_cast<int>(f)]) {}
  void widen(const uint16_t* src, int64_t n, float* dst) const { to_(src, n, dst); }
  // n values from src widened into buffer `slot`; returns the buffer.
  float* read(int slot, const uint16_t* src, int64_t n) const {
    float* b = block_buffer(slot, n);
    to_(src, n, b);
    return b;
  }
  // rows of n values, `stride` apart in src, widened into buffer `slot` as one (rows, n) block.
  float* read_rows(int slot, const uint16_t* src, int64_t rows, int64_t n, int64_t stride) const {
    float* b = block_buffer(slot, rows * n);
    for (int64_t r = 0; r < rows; ++r) to_(src + r * stride, n, b + r * n);
    return b;
  }
  void write(const float* src, int64_t n, uint16_t* dst) const { from_(src, n, dst); }
  void write_rows(const float* src, int64_t rows, int64_t n, int64_t stride, uint16_t* dst) const {
    for (int64_t r = 0; r < rows; ++r) from_(src + r * n, n, dst + r * stride);
  }

 private:
  void (*to_)(const uint16_t*, int64_t, float*);
  void (*from_)(const float*, int64_t, uint16_t*);
};

// For kernels that index their arrays by absolute element number i in [begin, end) (the
// binary losses: their weights broadcast by i): the block buffer p, holding elements from
// `first` on, as a pointer q with q + i == p + (i - first). Computed on addresses, so the
// kernel only ever forms pointers into the buffer.
template <class P>
P* rebase(P* p, int64_t first) {
  return reinterpret_cast<P*>(reinterpret_cast<uintptr_t>(p) - static_cast<uintptr_t>(first) * sizeof(P));
}

}  // namespace logitops
