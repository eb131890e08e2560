// Training-mode BatchNorm without affine parameters on channels-last fp32 CPU tensors: the
// search cells' SearchBatchNorm2d (nasspeech/kernels/batchnorm.py).
//
//   forward:  y = (x - mean) * invstd, per channel over N, H, W (biased variance), running
//             statistics updated as PyTorch does (momentum, unbiased variance); optionally
//             out = w * y or out += w * y (the mixed op's weighted sum) in the same pass.
//   backward: dx = scale * (g - mean(g) - y * mean(g * y)) and the per-channel sum(g * y).
//
// x is read from memory once for the statistics: it is cut into units of about 32 KB (a
// sample's run of pixels), and each unit's mean and sum of squared deviations are computed in
// two passes over the unit while it is in cache (float partial sums over at most 128 pixels,
// added in double; the first pass sums x minus the first pixel, against a large mean), then combined across units with Chan's formula in double: as accurate as
// a two-pass algorithm, also for inputs with a large mean. A second pass writes y (and the
// weighted sum). In channels-last memory a pixel's channels are contiguous: 8-wide vectors
// over channels, several pixels per step (independent accumulators). Units are fixed by the
// shape and their partials are added in a fixed order: the results do not depend on the
// thread count.
#include <torch/library.h>
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <tuple>
#include <type_traits>
#include <vector>

namespace {

typedef float v8 __attribute__((vector_size(32)));
inline v8 load8(const float* p) { v8 v; std::memcpy(&v, p, sizeof(v)); return v; }
inline void store8(float* p, v8 v) { std::memcpy(p, &v, sizeof(v)); }
inline v8 splat(float f) { return v8{f, f, f, f, f, f, f, f}; }

constexpr int64_t kUnitFloats = 8192;  // floats per unit (32 KB: stays in L1/L2 between passes)
constexpr int64_t kChunk = 128;        // pixels per float partial sum

// Scratch memory of the calling thread, reused across calls (grown, never freed): small
// allocations between the large tensors of a training step would split the heap's free
// blocks and raise the peak RSS. Slot: one buffer per concurrent use.
template <class T, int Slot>
T* scratch(size_t n) {
  thread_local std::vector<T> buf;
  if (buf.size() < n) buf.resize(n);
  return buf.data();
}

struct Units {
  int64_t N, C, HW, per_unit, per_sample, count;
  Units(int64_t n, int64_t c, int64_t hw) : N(n), C(c), HW(hw) {
    per_unit = std::max<int64_t>(1, kUnitFloats / std::max<int64_t>(c, 1));
    per_sample = (hw + per_unit - 1) / per_unit;
    count = n * per_sample;
  }
  // first flat float offset and pixel count of unit u
  int64_t offset(int64_t u) const { return ((u / per_sample) * HW + (u % per_sample) * per_unit) * C; }
  int64_t pixels(int64_t u) const { return std::min(per_unit, HW - (u % per_sample) * per_unit); }
};

// Calls body with the number of 8-channel blocks as a compile-time constant for the common
// channel counts, 0 (channels known at run time only) otherwise.
template <class Body>
void with_blocks(int64_t C, Body body) {
  switch (C) {
    case 8: body(std::integral_constant<int, 1>{}); break;
    case 16: body(std::integral_constant<int, 2>{}); break;
    case 24: body(std::integral_constant<int, 3>{}); break;
    case 32: body(std::integral_constant<int, 4>{}); break;
    case 48: body(std::integral_constant<int, 6>{}); break;
    case 64: body(std::integral_constant<int, 8>{}); break;
    default: body(std::integral_constant<int, 0>{});
  }
}

// Calls body(cb, u) for every unit u, in parallel over units; cb: with_blocks's constant.
template <class Body>
void each_unit(const Units& units, Body body) {
  with_blocks(units.C, [&](auto cb) {
    at::parallel_for(0, units.count, 1, [&](int64_t u0, int64_t u1) {
      for (int64_t u = u0; u < u1; ++u) body(cb, u);
    });
  });
}

// out[k * C + c] += sum over the pixels [0, P) of the k-th value f gives for channel c.
// f(i, c0, v) sets v[0..NOUT) for the 8 channels c0.. of flat index i = p * C + c0; fs(i, c, v)
// does so for the single channel c (channels beyond a multiple of 8).
template <int CB, int NOUT, class F, class FS>
void channel_sums(int64_t P, int64_t C_rt, F f, FS fs, double* out) {
  if constexpr (CB > 0) {
    constexpr int64_t C = CB * 8;
    constexpr int G = CB >= 4 ? 1 : 4 / CB;  // pixels per step: at least 4 accumulators
    for (int64_t p0 = 0; p0 < P; p0 += kChunk) {
      const int64_t p1 = std::min(P, p0 + kChunk);
      v8 acc[NOUT][G][CB] = {};
      int64_t p = p0;
      for (; p + G <= p1; p += G)
        for (int g = 0; g < G; ++g)
          for (int b = 0; b < CB; ++b) {
            v8 v[NOUT];
            f((p + g) * C + b * 8, b * 8, v);
            for (int k = 0; k < NOUT; ++k) acc[k][g][b] += v[k];
          }
      for (; p < p1; ++p)
        for (int b = 0; b < CB; ++b) {
          v8 v[NOUT];
          f(p * C + b * 8, b * 8, v);
          for (int k = 0; k < NOUT; ++k) acc[k][0][b] += v[k];
        }
      for (int k = 0; k < NOUT; ++k)
        for (int b = 0; b < CB; ++b) {
          v8 t = acc[k][0][b];
          for (int g = 1; g < G; ++g) t += acc[k][g][b];
          for (int j = 0; j < 8; ++j) out[k * C + b * 8 + j] += t[j];
        }
    }
  } else {
    const int64_t C = C_rt, CV = C - C % 8;
    float* acc = scratch<float, 1>(static_cast<size_t>(NOUT * C));
    for (int64_t p0 = 0; p0 < P; p0 += kChunk) {
      const int64_t p1 = std::min(P, p0 + kChunk);
      std::fill(acc, acc + NOUT * C, 0.f);
      for (int64_t p = p0; p < p1; ++p) {
        for (int64_t c0 = 0; c0 < CV; c0 += 8) {
          v8 v[NOUT];
          f(p * C + c0, c0, v);
          for (int k = 0; k < NOUT; ++k) store8(&acc[k * C + c0], load8(&acc[k * C + c0]) + v[k]);
        }
        for (int64_t c = CV; c < C; ++c) {
          float v[NOUT];
          fs(p * C + c, c, v);
          for (int k = 0; k < NOUT; ++k) acc[k * C + c] += v[k];
        }
      }
      for (int64_t i = 0; i < NOUT * C; ++i) out[i] += acc[i];
    }
  }
}

// Calls f(i, c0) for every 8-channel vector and fs(i, c) for every remaining channel of the
// pixels [0, P), i the flat index.
template <int CB, class F, class FS>
void for_each_vector(int64_t P, int64_t C_rt, F f, FS fs) {
  if constexpr (CB > 0) {
    constexpr int64_t C = CB * 8;
    for (int64_t p = 0; p < P; ++p)
      for (int b = 0; b < CB; ++b) f(p * C + b * 8, b * 8);
  } else {
    const int64_t C = C_rt, CV = C - C % 8;
    for (int64_t p = 0; p < P; ++p) {
      for (int64_t c0 = 0; c0 < CV; c0 += 8) f(p * C + c0, c0);
      for (int64_t c = CV; c < C; ++c) fs(p * C + c, c);
    }
  }
}

void check_input(const at::Tensor& t, const char* op, const char* name) {
  TORCH_CHECK(t.dim() == 4, op, ": ", name, " must be 4-d, got ", t.dim(), "-d");
  TORCH_CHECK(t.scalar_type() == at::kFloat, op, ": ", name, " must be float32");
  TORCH_CHECK(t.device().is_cpu(), op, ": ", name, " must be a CPU tensor");
}

void check_channels(const at::Tensor& t, int64_t C, const char* op, const char* name) {
  TORCH_CHECK(t.scalar_type() == at::kFloat && t.is_contiguous() && t.numel() == C, op, ": ",
              name, " must be a contiguous float32 tensor of ", C, " values");
}

// Per-channel mean and biased variance of channels-last x (n values per channel), in double.
void statistics(const float* x, const Units& units, double* mean, double* var) {
  const int64_t C = units.C, U = units.count;
  double* part = scratch<double, 0>(static_cast<size_t>(U * 2 * C));  // per unit: mean, M2
  float* means = scratch<float, 0>(static_cast<size_t>(U * C));       // per unit: mean in float
  std::fill(part, part + U * 2 * C, 0.0);
  const float* k = x;  // shift: the first pixel (sums of x - k have no large mean to lose)
  each_unit(units, [&](auto cb, int64_t u) {
    constexpr int CB = decltype(cb)::value;
    const float* xu = x + units.offset(u);
    const int64_t P = units.pixels(u);
    float* m = means + u * C;
    double* mu = part + u * 2 * C;
    double* m2 = mu + C;
    channel_sums<CB, 1>(
        P, C, [xu, k](int64_t i, int64_t c0, v8* v) { v[0] = load8(xu + i) - load8(k + c0); },
        [xu, k](int64_t i, int64_t c, float* v) { v[0] = xu[i] - k[c]; }, mu);
    for (int64_t c = 0; c < C; ++c) {
      mu[c] = static_cast<double>(k[c]) + mu[c] / static_cast<double>(P);
      m[c] = static_cast<float>(mu[c]);
    }
    const float* mp = m;
    channel_sums<CB, 1>(
        P, C,
        [xu, mp](int64_t i, int64_t c0, v8* v) { const v8 d = load8(xu + i) - load8(mp + c0); v[0] = d * d; },
        [xu, mp](int64_t i, int64_t c, float* v) { const float d = xu[i] - mp[c]; v[0] = d * d; }, m2);
    for (int64_t c = 0; c < C; ++c) {  // sum (x - m~)^2 = M2 + P (mean - m~)^2
      const double e = mu[c] - static_cast<double>(m[c]);
      m2[c] = std::max(0.0, m2[c] - static_cast<double>(P) * e * e);
    }
  });
  const double n = static_cast<double>(units.N * units.HW);
  std::fill(mean, mean + C, 0.0);
  std::fill(var, var + C, 0.0);
  for (int64_t u = 0; u < U; ++u)
    for (int64_t c = 0; c < C; ++c) mean[c] += part[u * 2 * C + c] * static_cast<double>(units.pixels(u));
  for (int64_t c = 0; c < C; ++c) mean[c] /= n;
  for (int64_t u = 0; u < U; ++u) {
    const double P = static_cast<double>(units.pixels(u));
    for (int64_t c = 0; c < C; ++c) {
      const double d = part[u * 2 * C + c] - mean[c];
      var[c] += part[u * 2 * C + C + c] + P * d * d;
    }
  }
  for (int64_t c = 0; c < C; ++c) var[c] /= n;
}

// mode 0: y only; 1: out = w * y (a new tensor, allocated after y); 2: out += w * y
std::tuple<at::Tensor, at::Tensor, at::Tensor> forward_impl(const at::Tensor& input, at::Tensor out, int mode, float w,
                                                const at::Tensor& running_mean, const at::Tensor& running_var,
                                                double momentum, double eps, const char* op) {
  const auto x = input.contiguous(at::MemoryFormat::ChannelsLast);
  const int64_t N = x.size(0), C = x.size(1), HW = x.size(2) * x.size(3);
  TORCH_CHECK(N * HW > 1, op, ": more than one value per channel is needed in training");
  check_channels(running_mean, C, op, "running_mean");
  check_channels(running_var, C, op, "running_var");
  const Units units(N, C, HW);
  double* mean = scratch<double, 1>(static_cast<size_t>(2 * C));
  double* var = mean + C;
  statistics(x.data_ptr<float>(), units, mean, var);

  auto y = at::empty_like(x, x.options(), at::MemoryFormat::ChannelsLast);
  auto invstd = at::empty({C}, x.options());
  if (mode == 1) out = at::empty_like(x, x.options(), at::MemoryFormat::ChannelsLast);
  float* op_out = mode == 0 ? nullptr : out.data_ptr<float>();
  float* hi = scratch<float, 2>(static_cast<size_t>(2 * C));  // mean = hi + lo: y stays
  float* lo = hi + C;                                          // accurate for a large mean
  float* inv = invstd.data_ptr<float>();
  float* rm = running_mean.data_ptr<float>();
  float* rv = running_var.data_ptr<float>();
  const double n = static_cast<double>(N * HW);
  for (int64_t c = 0; c < C; ++c) {
    hi[c] = static_cast<float>(mean[c]);
    lo[c] = static_cast<float>(mean[c] - static_cast<double>(hi[c]));
    inv[c] = static_cast<float>(1.0 / std::sqrt(var[c] + eps));
    rm[c] = static_cast<float>(momentum * mean[c] + (1.0 - momentum) * rm[c]);
    rv[c] = static_cast<float>(momentum * (var[c] * n / (n - 1.0)) + (1.0 - momentum) * rv[c]);
  }
  const float* xp = x.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  const float* hp = hi;
  const float* lp = lo;
  const v8 wv = splat(w);
  auto write = [&](auto md) {
    constexpr int MODE = decltype(md)::value;
    each_unit(units, [&](auto cb, int64_t u) {
      constexpr int CB = decltype(cb)::value;
      const int64_t off = units.offset(u);
      const float* xu = xp + off;
      float* yu = yp + off;
      float* ou = op_out == nullptr ? nullptr : op_out + off;
      for_each_vector<CB>(
          units.pixels(u), C,
          [&](int64_t i, int64_t c0) {
            const v8 v = ((load8(xu + i) - load8(hp + c0)) - load8(lp + c0)) * load8(inv + c0);
            store8(yu + i, v);
            if constexpr (MODE == 1) store8(ou + i, wv * v);
            if constexpr (MODE == 2) store8(ou + i, load8(ou + i) + wv * v);
          },
          [&](int64_t i, int64_t c) {
            const float v = ((xu[i] - hp[c]) - lp[c]) * inv[c];
            yu[i] = v;
            if constexpr (MODE == 1) ou[i] = w * v;
            if constexpr (MODE == 2) ou[i] += w * v;
          });
    });
  };
  if (mode == 0) write(std::integral_constant<int, 0>{});
  else if (mode == 1) write(std::integral_constant<int, 1>{});
  else write(std::integral_constant<int, 2>{});
  return {y, invstd, out};
}

std::tuple<at::Tensor, at::Tensor> batch_norm_forward(const at::Tensor& x, const at::Tensor& running_mean,
                                                      const at::Tensor& running_var, double momentum, double eps) {
  check_input(x, "batch_norm_forward", "x");
  auto r = forward_impl(x, at::Tensor(), 0, 0.f, running_mean, running_var, momentum, eps, "batch_norm_forward");
  return {std::get<0>(r), std::get<1>(r)};
}

float weight_value(const at::Tensor& w, const char* op) {
  TORCH_CHECK(w.numel() == 1 && w.scalar_type() == at::kFloat, op, ": w must be one float32 value");
  return *w.contiguous().data_ptr<float>();
}

// out = w * y: returns (out, y, invstd)
std::tuple<at::Tensor, at::Tensor, at::Tensor> batch_norm_weighted(const at::Tensor& x, const at::Tensor& w,
                                                                   const at::Tensor& running_mean,
                                                                   const at::Tensor& running_var, double momentum,
                                                                   double eps) {
  const char* op = "batch_norm_weighted";
  check_input(x, op, "x");
  auto r = forward_impl(x, at::Tensor(), 1, weight_value(w, op), running_mean, running_var, momentum, eps, op);
  return {std::get<2>(r), std::get<0>(r), std::get<1>(r)};
}

// acc += w * y in place: returns (y, invstd)
std::tuple<at::Tensor, at::Tensor> batch_norm_weighted_sum_(const at::Tensor& acc, const at::Tensor& x,
                                                            const at::Tensor& w, const at::Tensor& running_mean,
                                                            const at::Tensor& running_var, double momentum, double eps) {
  const char* op = "batch_norm_weighted_sum_";
  check_input(x, op, "x");
  check_input(acc, op, "acc");
  TORCH_CHECK(acc.sizes() == x.sizes(), op, ": acc must have the shape of x");
  TORCH_CHECK(acc.is_contiguous(at::MemoryFormat::ChannelsLast), op, ": acc must be channels-last contiguous");
  auto r = forward_impl(x, acc, 2, weight_value(w, op), running_mean, running_var, momentum, eps, op);
  return {std::get<0>(r), std::get<1>(r)};
}

std::tuple<at::Tensor, at::Tensor> batch_norm_backward(const at::Tensor& grad_in, const at::Tensor& y_in,
                                                       const at::Tensor& scale, bool input_grad) {
  const char* op = "batch_norm_backward";
  check_input(grad_in, op, "grad");
  check_input(y_in, op, "y");
  TORCH_CHECK(grad_in.sizes() == y_in.sizes(), op, ": grad and y must have the same shape");
  const auto g = grad_in.contiguous(at::MemoryFormat::ChannelsLast);
  const auto y = y_in.contiguous(at::MemoryFormat::ChannelsLast);
  const int64_t N = y.size(0), C = y.size(1), HW = y.size(2) * y.size(3);
  check_channels(scale, C, op, "scale");
  const Units units(N, C, HW);
  const int64_t U = units.count;
  const float* gp = g.data_ptr<float>();
  const float* yp = y.data_ptr<float>();
  double* part = scratch<double, 0>(static_cast<size_t>(U * 2 * C));  // per unit: sum g, sum g*y
  std::fill(part, part + U * 2 * C, 0.0);
  each_unit(units, [&](auto cb, int64_t u) {
    constexpr int CB = decltype(cb)::value;
    const int64_t off = units.offset(u);
    const float* gu = gp + off;
    const float* yu = yp + off;
    channel_sums<CB, 2>(
        units.pixels(u), C,
        [gu, yu](int64_t i, int64_t, v8* v) { const v8 a = load8(gu + i); v[0] = a; v[1] = a * load8(yu + i); },
        [gu, yu](int64_t i, int64_t, float* v) { v[0] = gu[i]; v[1] = gu[i] * yu[i]; },
        part + u * 2 * C);
  });
  double* sg = scratch<double, 1>(static_cast<size_t>(2 * C));
  double* sgy = sg + C;
  std::fill(sg, sg + 2 * C, 0.0);
  for (int64_t u = 0; u < U; ++u)
    for (int64_t c = 0; c < C; ++c) {
      sg[c] += part[u * 2 * C + c];
      sgy[c] += part[u * 2 * C + C + c];
    }
  auto sum_gy = at::empty({C}, y.options());
  float* sgyp = sum_gy.data_ptr<float>();
  for (int64_t c = 0; c < C; ++c) sgyp[c] = static_cast<float>(sgy[c]);
  if (!input_grad) return {at::empty({0}, y.options()), sum_gy};

  const double n = static_cast<double>(N * HW);
  float* mg = scratch<float, 2>(static_cast<size_t>(2 * C));
  float* mgy = mg + C;
  for (int64_t c = 0; c < C; ++c) {
    mg[c] = static_cast<float>(sg[c] / n);
    mgy[c] = static_cast<float>(sgy[c] / n);
  }
  const auto sc = scale.contiguous();
  const float* sp = sc.data_ptr<float>();
  const float* mgp = mg;
  const float* mgyp = mgy;
  auto dx = at::empty_like(y, y.options(), at::MemoryFormat::ChannelsLast);
  float* dp = dx.data_ptr<float>();
  each_unit(units, [&](auto cb, int64_t u) {
    constexpr int CB = decltype(cb)::value;
    const int64_t off = units.offset(u);
    const float* gu = gp + off;
    const float* yu = yp + off;
    float* du = dp + off;
    for_each_vector<CB>(
        units.pixels(u), C,
        [&](int64_t i, int64_t c0) {
          const v8 t = (load8(gu + i) - load8(mgp + c0)) - load8(yu + i) * load8(mgyp + c0);
          store8(du + i, t * load8(sp + c0));
        },
        [&](int64_t i, int64_t c) { du[i] = ((gu[i] - mgp[c]) - yu[i] * mgyp[c]) * sp[c]; });
  });
  return {dx, sum_gy};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(nasspeech, m) {
  m.def("batch_norm_forward(Tensor x, Tensor(a!) running_mean, Tensor(b!) running_var, float momentum, "
        "float eps) -> (Tensor, Tensor)");
  m.def("batch_norm_weighted(Tensor x, Tensor w, Tensor(a!) running_mean, Tensor(b!) running_var, "
        "float momentum, float eps) -> (Tensor, Tensor, Tensor)");
  m.def("batch_norm_weighted_sum_(Tensor(a!) acc, Tensor x, Tensor w, Tensor(b!) running_mean, "
        "Tensor(c!) running_var, float momentum, float eps) -> (Tensor, Tensor)");
  m.def("batch_norm_backward(Tensor grad, Tensor y, Tensor scale, bool input_grad) -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(nasspeech, CPU, m) {
  m.impl("batch_norm_forward", &batch_norm_forward);
  m.impl("batch_norm_weighted", &batch_norm_weighted);
  m.impl("batch_norm_weighted_sum_", &batch_norm_weighted_sum_);
  m.impl("batch_norm_backward", &batch_norm_backward);
}
