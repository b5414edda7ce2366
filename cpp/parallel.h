// A small thread pool of our own (no OpenMP runtime to clash with torch's or numpy's).
//
// Work is cut into chunks of at most the grain the caller gives, of equal sizes (a count that
// 2 or 4 threads share evenly), whose boundaries depend only on the problem size and the
// grain, never on the thread count; reductions add the chunks' partial sums in chunk order:
// results are bit-identical for any number of threads. Work that fits in one chunk runs
// inline on the calling thread and never touches the pool. The caller works too and never
// waits for a worker that has not started (a late wake-up costs it nothing); work too short to be
// worth a sleeping worker's wake-up (a few grains) does not wake one. If another call
// already holds the pool (several Python threads), the caller runs its chunks itself.
// Threads that cannot be created (process or memory limits) leave their chunks to the others
// (one line on stderr says so, once); a child of fork() starts a pool of its own.
#pragma once

#include <cstdint>
#include <functional>

namespace logitops {

void set_num_threads(int n);  // clamped to [1, 1024]; the pool is resized lazily
// LOGITOPS_NUM_THREADS (read at load; a positive integer, capped at 1024), else the
// hardware's concurrency.
int get_num_threads();

// Items per chunk so that one chunk is about `target_work` units of work when one item
// costs `work_per_item` (at least one item).
int64_t grain_for(int64_t work_per_item, int64_t target_work = 32768);

// Rows per chunk for the row-wise kernels (rows of `cols` elements): about grain_for's default
// work, so that 1e5 elements already split across two threads, and at least 4 rows, as the
// kernels prefetch the next row of their chunk while working on one.
int64_t row_grain(int64_t cols);

// fn(begin, end) over the chunks of [0, n).
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

// fn(begin, end, partial) fills partial[0..k) for its chunk (zeroed beforehand); the chunks'
// partials are summed in chunk order into out[0..k).
void parallel_reduce(int64_t n, int64_t grain, int k, const std::function<void(int64_t, int64_t, double*)>& fn,
                     double* out);

}  // namespace logitops
