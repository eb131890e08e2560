// One reduction over the batch, shared by the weight-gradient kernels.
#pragma once
#include <ATen/Parallel.h>
#include <cstdint>
#include <vector>

namespace nasspeech {

// Runs accumulate(n0, n1, partial) over the batch in parallel, each thread into its own zeroed
// partial of `per` floats, and returns the partials' sum, added in thread order: the result
// is deterministic for a given thread count.
template <typename Accumulate>
std::vector<float> sum_over_batch(int64_t batch, int64_t per, const Accumulate& accumulate) {
  const int threads = at::get_num_threads();
  std::vector<float> parts(static_cast<size_t>(threads) * per, 0.f);
  at::parallel_for(0, batch, 1, [&](int64_t n0, int64_t n1) {
    accumulate(n0, n1, parts.data() + static_cast<size_t>(at::get_thread_num()) * per);
  });
  for (int t = 1; t < threads; ++t)
    for (int64_t i = 0; i < per; ++i) parts[i] += parts[static_cast<size_t>(t) * per + i];
  parts.resize(per);
  return parts;
}

}  // namespace nasspeech
