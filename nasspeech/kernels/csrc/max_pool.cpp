// 3x3 max pooling (padding 1, stride 1 or 2) on channels-last fp32 CPU tensors, with a uint8
// argmax: the tap t = 3*i + j of the window (row i, column j) that holds the maximum, instead
// of PyTorch's int64 input positions (8x less memory kept for the backward).
//
// Window order and ties as in PyTorch: the first maximum in row-major window order, or the last
// NaN if there is one (a value is taken when it is > the running maximum or NaN). Padding is
// never chosen. That rule is associative over row segments, so the forward is separable: a
// horizontal pass (3 columns) per input row into a ring of three row buffers, then a vertical
// pass (3 rows) per output row; both are runs of independent 8-wide vector selects.
//
// The backward is a gather, not a scatter: each input pixel sums the output gradients of the
// (at most 3x3) windows that cover it and chose it, in increasing output order (PyTorch's
// scatter order). No atomics, no zero fill; deterministic. The double backward needs the
// transpose, max_pool3x3_gather: the values at the chosen taps.
#include <torch/library.h>
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <cmath>
#include <cstdint>
#include <cstring>
#ifdef __AVX2__
#include <immintrin.h>
#endif
#include <tuple>
#include <vector>

namespace {

typedef float v8 __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));
typedef uint8_t v8b __attribute__((vector_size(8)));

inline v8 load8(const float* p) { v8 v; std::memcpy(&v, p, sizeof(v)); return v; }
inline v8i load8i(const int32_t* p) { v8i v; std::memcpy(&v, p, sizeof(v)); return v; }
#ifdef __AVX2__  // GCC scalarises the generic uint8 <-> int32 vector conversions
inline v8i load8b(const uint8_t* p) {
  return (v8i)_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
}
#else
inline v8i load8b(const uint8_t* p) { v8b v; std::memcpy(&v, p, sizeof(v)); return __builtin_convertvector(v, v8i); }
#endif
inline void store8(float* p, v8 v) { std::memcpy(p, &v, sizeof(v)); }
inline void store8i(int32_t* p, v8i v) { std::memcpy(p, &v, sizeof(v)); }
inline void store8b(uint8_t* p, v8i v) { v8b b = __builtin_convertvector(v, v8b); std::memcpy(p, &b, sizeof(b)); }

// whether b replaces the running maximum a (b comes later in window order)
inline v8i takes(v8 a, v8 b) { return (b > a) | (b != b); }
inline bool takes(float a, float b) { return b > a || std::isnan(b); }

struct Geometry {
  int64_t C, H, W, Ho, Wo, s;
};

// hm[wo, c], hj[wo, c]: maximum and its column j over columns wo*s-1+j of one input row
void horizontal(const float* row, float* hm, int32_t* hj, const Geometry& g) {
  const int64_t C = g.C, vec_end = C - C % 8;
  for (int64_t wo = 0; wo < g.Wo; ++wo) {
    const int64_t col = wo * g.s - 1;
    const int jlo = col < 0 ? 1 : 0;
    const int jhi = g.W - 1 - col < 2 ? static_cast<int>(g.W - 1 - col) : 2;
    const float* p = row + (col + jlo) * C;  // the first column inside the image
    float* m = hm + wo * C;
    int32_t* j = hj + wo * C;
    if (jlo == 0 && jhi == 2) {
      for (int64_t c = 0; c < vec_end; c += 8) {
        const v8 a = load8(p + c), b = load8(p + C + c), d = load8(p + 2 * C + c);
        const v8i t1 = takes(a, b);
        const v8 m1 = t1 ? b : a;
        const v8i j1 = t1 & 1;
        const v8i t2 = takes(m1, d);
        store8(m + c, t2 ? d : m1);
        store8i(j + c, t2 ? v8i{} + 2 : j1);
      }
    } else {
      for (int64_t c = 0; c < vec_end; c += 8) {
        v8 best = load8(p + c);
        v8i at = v8i{} + jlo;
        for (int jj = jlo + 1; jj <= jhi; ++jj) {
          const v8 v = load8(p + (jj - jlo) * C + c);
          const v8i t = takes(best, v);
          best = t ? v : best;
          at = t ? v8i{} + jj : at;
        }
        store8(m + c, best);
        store8i(j + c, at);
      }
    }
    for (int64_t c = vec_end; c < C; ++c) {  // channels beyond a multiple of 8
      float best = p[c];
      int32_t at = jlo;
      for (int jj = jlo + 1; jj <= jhi; ++jj) {
        const float v = p[(jj - jlo) * C + c];
        if (takes(best, v)) { best = v; at = jj; }
      }
      m[c] = best;
      j[c] = at;
    }
  }
}

void forward_image(const float* x, float* y, uint8_t* taps, float* ring_m, int32_t* ring_j,
                   const Geometry& g) {
  const int64_t C = g.C, row_len = g.Wo * C, vec_end = row_len - row_len % 8;
  int64_t next = 0;  // the next input row to run the horizontal pass on
  for (int64_t ho = 0; ho < g.Ho; ++ho) {
    const int64_t top = ho * g.s - 1;
    const int ilo = top < 0 ? 1 : 0;
    const int ihi = g.H - 1 - top < 2 ? static_cast<int>(g.H - 1 - top) : 2;
    for (; next <= top + ihi; ++next)
      horizontal(x + next * g.W * C, ring_m + (next % 3) * row_len, ring_j + (next % 3) * row_len, g);
    const float* rm[3];
    const int32_t* rj[3];
    for (int i = ilo; i <= ihi; ++i) {
      rm[i] = ring_m + ((top + i) % 3) * row_len;
      rj[i] = ring_j + ((top + i) % 3) * row_len;
    }
    float* yo = y + ho * row_len;
    uint8_t* to = taps + ho * row_len;
    for (int64_t k = 0; k < vec_end; k += 8) {  // a flat run over (wo, c)
      v8 best = load8(rm[ilo] + k);
      v8i at = load8i(rj[ilo] + k) + 3 * ilo;
      for (int i = ilo + 1; i <= ihi; ++i) {
        const v8 v = load8(rm[i] + k);
        const v8i t = takes(best, v);
        best = t ? v : best;
        at = t ? load8i(rj[i] + k) + 3 * i : at;
      }
      store8(yo + k, best);
      store8b(to + k, at);
    }
    for (int64_t k = vec_end; k < row_len; ++k) {
      float best = rm[ilo][k];
      int32_t at = rj[ilo][k] + 3 * ilo;
      for (int i = ilo + 1; i <= ihi; ++i)
        if (takes(best, rm[i][k])) { best = rm[i][k]; at = rj[i][k] + 3 * i; }
      yo[k] = best;
      to[k] = static_cast<uint8_t>(at);
    }
  }
}

Geometry geometry(const at::Tensor& x, int64_t stride) {
  TORCH_CHECK(stride == 1 || stride == 2, "max_pool3x3: stride 1 or 2 expected, got ", stride);
  const int64_t H = x.size(2), W = x.size(3);
  return {x.size(1), H, W, (H - 1) / stride + 1, (W - 1) / stride + 1, stride};
}

void check_input(const at::Tensor& t, const char* what) {
  TORCH_CHECK(t.dim() == 4 && t.scalar_type() == at::kFloat && t.device().is_cpu(),
              "max_pool3x3: ", what, " must be a 4-d float32 CPU tensor");
}

std::tuple<at::Tensor, at::Tensor> max_pool3x3_forward(const at::Tensor& input, int64_t stride) {
  check_input(input, "input");
  const auto x = input.contiguous(at::MemoryFormat::ChannelsLast);
  const Geometry g = geometry(x, stride);
  const int64_t N = x.size(0);
  auto y = at::empty({N, g.C, g.Ho, g.Wo}, x.options().memory_format(at::MemoryFormat::ChannelsLast));
  auto taps = at::empty({N, g.C, g.Ho, g.Wo},
                        x.options().dtype(at::kByte).memory_format(at::MemoryFormat::ChannelsLast));
  if (y.numel() == 0) return {y, taps};
  const float* xp = x.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  uint8_t* tp = taps.data_ptr<uint8_t>();
  at::parallel_for(0, N, 1, [&](int64_t n0, int64_t n1) {
    std::vector<float> ring_m(3 * g.Wo * g.C);
    std::vector<int32_t> ring_j(3 * g.Wo * g.C);
    for (int64_t n = n0; n < n1; ++n)
      forward_image(xp + n * g.H * g.W * g.C, yp + n * g.Ho * g.Wo * g.C, tp + n * g.Ho * g.Wo * g.C,
                    ring_m.data(), ring_j.data(), g);
  });
  return {y, taps};
}

// the windows covering input position h (or w): pairs (tap row i, output row ho), in increasing ho
struct Cover {
  int n = 0;
  int tap[3];
  int64_t out[3];
};

Cover cover(int64_t h, int64_t out_size, int64_t s) {
  Cover c;
  for (int i = 2; i >= 0; --i) {  // ho = (h + 1 - i) / s grows as i falls
    const int64_t q = h + 1 - i;
    if (q < 0 || q % s != 0 || q / s >= out_size) continue;
    c.tap[c.n] = i;
    c.out[c.n++] = q / s;
  }
  return c;
}

// The output rows (of gradients and taps) that cover one input row, and their tap rows.
struct Rows {
  int n;
  const float* g[3];
  const uint8_t* t[3];
  int32_t code[3];  // 3 * tap row
};

// o[c] = sum over the covering windows (rows x columns, in increasing output order) whose tap
// is this pixel of their gradient; cols holds (wo * C, tap column) pairs
inline void gather_pixel(float* o, const Rows& r, const int64_t* col_off, const int32_t* col_tap,
                         int nc, int64_t C) {
  const int64_t vec_end = C - C % 8;
  for (int64_t c = 0; c < vec_end; c += 8) {
    v8 acc = {0};
    for (int a = 0; a < r.n; ++a)
      for (int b = 0; b < nc; ++b) {
        const int64_t k = col_off[b] + c;
        acc += load8b(r.t[a] + k) == r.code[a] + col_tap[b] ? load8(r.g[a] + k) : v8{};
      }
    store8(o + c, acc);
  }
  for (int64_t c = vec_end; c < C; ++c) {
    float acc = 0.f;
    for (int a = 0; a < r.n; ++a)
      for (int b = 0; b < nc; ++b) {
        const int64_t k = col_off[b] + c;
        if (r.t[a][k] == r.code[a] + col_tap[b]) acc += r.g[a][k];
      }
    o[c] = acc;
  }
}

// stride 1: columns 1..W-2 of one input row, covered by all three windows wo = w+1-j; in the
// flat (w, c) index the tap column j is a shift by (1-j)*C, whatever C is
template <int NR>
void interior_row(float* o, const Rows& r, int64_t width, int64_t C) {
  const int64_t k0 = C, k1 = (width - 1) * C, vec_end = k1 - (k1 - k0) % 8;
  for (int64_t k = k0; k < vec_end; k += 8) {
    v8 part[NR];  // a short tree of sums (9 chained adds would be the critical path)
    for (int a = 0; a < NR; ++a) {
      v8 term[3];
      for (int j = 2; j >= 0; --j) {
        const int64_t q = k + (1 - j) * C;
        term[j] = load8b(r.t[a] + q) == r.code[a] + j ? load8(r.g[a] + q) : v8{};
      }
      part[a] = (term[2] + term[1]) + term[0];
    }
    v8 acc = part[0];
    for (int a = 1; a < NR; ++a) acc += part[a];
    store8(o + k, acc);
  }
  for (int64_t k = vec_end; k < k1; ++k) {
    float acc = 0.f;
    for (int a = 0; a < NR; ++a)
      for (int j = 2; j >= 0; --j) {
        const int64_t q = k + (1 - j) * C;
        if (r.t[a][q] == r.code[a] + j) acc += r.g[a][q];
      }
    o[k] = acc;
  }
}

// one input row of the gradient
void backward_row(float* o, const Rows& r, int64_t width, int64_t Wo, int64_t C, int64_t s) {
  if (s == 1 && width >= 3) {
    switch (r.n) {  // unrolled per number of covering rows
      case 1: interior_row<1>(o, r, width, C); break;
      case 2: interior_row<2>(o, r, width, C); break;
      default: interior_row<3>(o, r, width, C); break;
    }
    int64_t off[3];
    int32_t tap[3];
    for (int64_t edge : {int64_t(0), width - 1}) {
      const Cover q = cover(edge, Wo, s);
      for (int b = 0; b < q.n; ++b) { off[b] = q.out[b] * C; tap[b] = q.tap[b]; }
      gather_pixel(o + edge * C, r, off, tap, q.n, C);
    }
    return;
  }
  if (s == 2) {
    // column 2wo is covered by window wo (tap column 1); column 2wo+1 by windows wo (tap
    // column 2) and wo+1 (tap column 0)
    for (int64_t wo = 0; wo < Wo; ++wo) {
      const int64_t even[1] = {wo * C}, odd[2] = {wo * C, (wo + 1) * C};
      const int32_t even_tap[1] = {1}, odd_tap[2] = {2, 0};
      gather_pixel(o + 2 * wo * C, r, even, even_tap, 1, C);
      if (2 * wo + 1 < width) gather_pixel(o + (2 * wo + 1) * C, r, odd, odd_tap, wo + 1 < Wo ? 2 : 1, C);
    }
    return;
  }
  for (int64_t w = 0; w < width; ++w) {  // stride 1, fewer than 3 columns
    const Cover q = cover(w, Wo, s);
    int64_t off[3];
    int32_t tap[3];
    for (int b = 0; b < q.n; ++b) { off[b] = q.out[b] * C; tap[b] = q.tap[b]; }
    gather_pixel(o + w * C, r, off, tap, q.n, C);
  }
}

at::Tensor max_pool3x3_backward(const at::Tensor& grad_out, const at::Tensor& taps_in,
                                int64_t height, int64_t width, int64_t stride) {
  check_input(grad_out, "grad_out");
  TORCH_CHECK(taps_in.scalar_type() == at::kByte && taps_in.sizes() == grad_out.sizes(),
              "max_pool3x3_backward: uint8 taps of grad_out's shape expected");
  TORCH_CHECK(stride == 1 || stride == 2, "max_pool3x3_backward: stride 1 or 2 expected");
  const auto go = grad_out.contiguous(at::MemoryFormat::ChannelsLast);
  const auto taps = taps_in.contiguous(at::MemoryFormat::ChannelsLast);
  const int64_t N = go.size(0), C = go.size(1), Ho = go.size(2), Wo = go.size(3);
  TORCH_CHECK(height > 0 && width > 0 && (height - 1) / stride + 1 == Ho && (width - 1) / stride + 1 == Wo,
              "max_pool3x3_backward: input size does not match grad_out");
  auto gi = at::empty({N, C, height, width}, go.options().memory_format(at::MemoryFormat::ChannelsLast));
  if (gi.numel() == 0) return gi;
  const float* gp = go.data_ptr<float>();
  const uint8_t* tp = taps.data_ptr<uint8_t>();
  float* out = gi.data_ptr<float>();
  at::parallel_for(0, N, 1, [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n)
      for (int64_t h = 0; h < height; ++h) {
        const Cover c = cover(h, Ho, stride);
        Rows r;
        r.n = c.n;
        for (int a = 0; a < c.n; ++a) {
          const int64_t at = (n * Ho + c.out[a]) * Wo * C;
          r.g[a] = gp + at;
          r.t[a] = tp + at;
          r.code[a] = 3 * c.tap[a];
        }
        backward_row(out + (n * height + h) * width * C, r, width, Wo, C, stride);
      }
  });
  return gi;
}

at::Tensor max_pool3x3_gather(const at::Tensor& input, const at::Tensor& taps_in, int64_t stride) {
  check_input(input, "input");
  const auto x = input.contiguous(at::MemoryFormat::ChannelsLast);
  const auto taps = taps_in.contiguous(at::MemoryFormat::ChannelsLast);
  const Geometry g = geometry(x, stride);
  const int64_t N = x.size(0);
  TORCH_CHECK(taps.scalar_type() == at::kByte && taps.dim() == 4 && taps.size(0) == N &&
              taps.size(1) == g.C && taps.size(2) == g.Ho && taps.size(3) == g.Wo,
              "max_pool3x3_gather: uint8 taps of the pooled shape expected");
  auto y = at::empty({N, g.C, g.Ho, g.Wo}, x.options().memory_format(at::MemoryFormat::ChannelsLast));
  const float* xp = x.data_ptr<float>();
  const uint8_t* tp = taps.data_ptr<uint8_t>();
  float* yp = y.data_ptr<float>();
  at::parallel_for(0, N, 1, [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n)
      for (int64_t ho = 0; ho < g.Ho; ++ho)
        for (int64_t wo = 0; wo < g.Wo; ++wo) {
          const int64_t k = ((n * g.Ho + ho) * g.Wo + wo) * g.C;
          for (int64_t c = 0; c < g.C; ++c) {
            const int t = tp[k + c];
            const int64_t h = ho * g.s - 1 + t / 3, w = wo * g.s - 1 + t % 3;
            TORCH_CHECK(t < 9 && h >= 0 && h < g.H && w >= 0 && w < g.W,
                        "max_pool3x3_gather: tap outside the image");
            yp[k + c] = xp[((n * g.H + h) * g.W + w) * g.C + c];
          }
        }
  });
  return y;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(nasspeech, m) {
  m.def("max_pool3x3_forward(Tensor input, int stride) -> (Tensor, Tensor)");
  m.def("max_pool3x3_backward(Tensor grad_out, Tensor taps, int height, int width, int stride) -> Tensor");
  m.def("max_pool3x3_gather(Tensor input, Tensor taps, int stride) -> Tensor");
}

TORCH_LIBRARY_IMPL(nasspeech, CPU, m) {
  m.impl("max_pool3x3_forward", &max_pool3x3_forward);
  m.impl("max_pool3x3_backward", &max_pool3x3_backward);
  m.impl("max_pool3x3_gather", &max_pool3x3_gather);
}
