// Linear layers whose float32 weights lie exactly on a 4- or 8-bit block grid (GGUF Q4_1 / Q8_0,
// blocks of 32 along the input dimension), multiplied from the packed form with float32
// activations. Written by hand because torch has no such kernel: its int4/int8 weight-only CPU
// kernels are only fast with bfloat16 activations (not exact), and llama.cpp quantizes the
// activations to 8 bits. Every weight is dequantized in registers (d * q + m in float32, the
// same value the fp32 model holds) and multiplied in float32, so only the summation order
// differs from x @ w.T. Each block of a weight row is read once for up to TILE activation rows.
//
// Q4 layout: packed[n, b*16 + j] holds q[n, b*32 + j] in its low nibble and q[n, b*32 + 16 + j]
// in its high nibble; d[n, b], m[n, b] float16 (what GGUF stores: exact, 0.625 bytes a weight
// in all). Q8: q int8 [N, K], d [N, K/32] float16.

#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <algorithm>
#include <cstdint>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace {

constexpr int64_t BLOCK = 32;
constexpr int64_t TILE = 4;  // activation rows per pass over a weight row (registers)
constexpr int64_t GRAIN = 16;  // output rows per parallel task
constexpr int64_t SEGMENT = 1024;  // blocks whose scales a stack buffer holds (K = 32768)

#if defined(__AVX512F__)
// float32 copies of ``count`` (<= 16) float16 scales: one conversion for 16 blocks, so that
// each block then broadcasts its scale with a plain load (converting and broadcasting one
// float16 per block was a quarter of the kernel's time).
inline void widen(const at::Half* h, int count, float* out) {
  const __mmask16 lanes = static_cast<__mmask16>((1u << count) - 1u);
  _mm512_storeu_ps(out, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(lanes, h)));
}
#endif

// The two grids: each rebuilds one block of 32 weights of output row n, as two vectors of 16
// (AVX-512, from the block's scale and offset as floats) or as 32 floats (the portable path,
// also used to dequantize a whole layer).
struct Q4Grid {
  const uint8_t* packed;
  const at::Half* d;
  const at::Half* m;
  int64_t K;

  void block(int64_t n, int64_t b, float* w) const {
    const uint8_t* p = packed + n * (K / 2) + b * 16;
    const float db = d[n * (K / BLOCK) + b], mb = m[n * (K / BLOCK) + b];  // exact
    for (int j = 0; j < 16; ++j) {
      w[j] = static_cast<float>(p[j] & 0x0F) * db + mb;
      w[j + 16] = static_cast<float>(p[j] >> 4) * db + mb;
    }
  }
#if defined(__AVX512F__)
  void scales(int64_t n, int64_t b0, int count, float* ds, float* ms) const {
    widen(d + n * (K / BLOCK) + b0, count, ds);
    widen(m + n * (K / BLOCK) + b0, count, ms);
  }
  void block(int64_t n, int64_t b, float db, float mb, __m512& w0, __m512& w1) const {
    // The block has only 16 distinct weights, d * q + m for q = 0..15: build them once (one
    // FMA, rounding once as gguf's float32 d * q + m does; d * q is exact in float32) and pick
    // each weight with a permute, which reads the low 4 bits of each 32-bit lane.
    const __m512i bytes = _mm512_cvtepu8_epi32(
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(packed + n * (K / 2) + b * 16)));
    const __m512 levels = _mm512_fmadd_ps(
        _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
        _mm512_set1_ps(db), _mm512_set1_ps(mb));
    w0 = _mm512_permutexvar_ps(bytes, levels);
    w1 = _mm512_permutexvar_ps(_mm512_srli_epi32(bytes, 4), levels);
  }
#endif
};

struct Q8Grid {
  const int8_t* q;
  const at::Half* d;
  int64_t K;

  void block(int64_t n, int64_t b, float* w) const {
    const int8_t* qb = q + n * K + b * BLOCK;
    const float db = d[n * (K / BLOCK) + b];
    for (int j = 0; j < BLOCK; ++j) w[j] = static_cast<float>(qb[j]) * db;
  }
#if defined(__AVX512F__)
  void scales(int64_t n, int64_t b0, int count, float* ds, float*) const {
    widen(d + n * (K / BLOCK) + b0, count, ds);
  }
  void block(int64_t n, int64_t b, float db, float, __m512& w0, __m512& w1) const {
    const int8_t* qb = q + n * K + b * BLOCK;
    const __m512 vd = _mm512_set1_ps(db);
    const __m128i q0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qb));
    const __m128i q1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qb + 16));
    w0 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q0)), vd);
    w1 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q1)), vd);
  }
#endif
};

#if defined(__AVX512F__)
// Row n's scales (and offsets) for ``len`` (<= SEGMENT) blocks from b0, as float32.
template <typename Grid>
void row_scales(const Grid& g, int64_t n, int64_t b0, int64_t len, float* ds, float* ms) {
  for (int64_t c = 0; c < len; c += 16)
    g.scales(n, b0 + c, static_cast<int>(std::min<int64_t>(16, len - c)), ds + c, ms + c);
}
#endif

// y[t, n] = x[t] . w[n] for T activation rows and output rows n0..n1, each weight block
// rebuilt once (in registers) for all T rows.
template <int T, typename Grid>
void grid_rows(const Grid& g, const float* x, int64_t K, float* y, int64_t N, int64_t n0,
               int64_t n1) {
  const int64_t nb = K / BLOCK;
  for (int64_t n = n0; n < n1; ++n) {
#if defined(__AVX512F__)
    // Independent accumulators per activation row (A of them, one per block of a group of
    // A / 2 blocks, two halves each): one chain of dependent FMAs would be latency-bound.
    // Their indices are compile-time constants and nothing else in the loop is written
    // through a pointer, so they stay in registers (else every FMA waits on a store and a
    // reload from the stack).
    constexpr int A = T == 1 ? 4 : 2;
    constexpr int G = A / 2;
    __m512 acc[T][A];
    for (int t = 0; t < T; ++t)
      for (int a = 0; a < A; ++a) acc[t][a] = _mm512_setzero_ps();
    // The row in segments whose scales fit a stack buffer (one segment below K = 32768).
    alignas(64) float ds[SEGMENT], ms[SEGMENT];
    for (int64_t s0 = 0; s0 < nb; s0 += SEGMENT) {
      const int64_t len = std::min(SEGMENT, nb - s0);
      row_scales(g, n, s0, len, ds, ms);
      int64_t i = 0;
      for (; i + G <= len; i += G) {
#pragma GCC unroll 8
        for (int v = 0; v < G; ++v) {
          __m512 w0, w1;
          const int64_t b = s0 + i + v;
          g.block(n, b, ds[i + v], ms[i + v], w0, w1);
#pragma GCC unroll 4
          for (int t = 0; t < T; ++t) {
            const float* xb = x + t * K + b * BLOCK;
            acc[t][2 * v] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(xb), acc[t][2 * v]);
            acc[t][2 * v + 1] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(xb + 16), acc[t][2 * v + 1]);
          }
        }
      }
      for (; i < len; ++i) {
        __m512 w0, w1;
        const int64_t b = s0 + i;
        g.block(n, b, ds[i], ms[i], w0, w1);
        for (int t = 0; t < T; ++t) {
          const float* xb = x + t * K + b * BLOCK;
          acc[t][0] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(xb), acc[t][0]);
          acc[t][1] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(xb + 16), acc[t][1]);
        }
      }
    }
    for (int t = 0; t < T; ++t) {
      __m512 sum = acc[t][0];
      for (int a = 1; a < A; ++a) sum = _mm512_add_ps(sum, acc[t][a]);
      y[t * N + n] = _mm512_reduce_add_ps(sum);
    }
#else
    float acc[T] = {};
    for (int64_t b = 0; b < nb; ++b) {
      float w[BLOCK];
      g.block(n, b, w);
      for (int t = 0; t < T; ++t) {
        const float* xb = x + t * K + b * BLOCK;
        float s = 0.f;
        for (int j = 0; j < BLOCK; ++j) s += w[j] * xb[j];
        acc[t] += s;
      }
    }
    for (int t = 0; t < T; ++t) y[t * N + n] = acc[t];
#endif
  }
}

// The whole layer as float32 [N, K] (for prefill, where torch's BLAS matmul is faster).
template <typename Grid>
torch::Tensor dequant(const Grid& g, int64_t N, const torch::TensorOptions& options) {
  const int64_t K = g.K, nb = K / BLOCK;
  auto w = torch::empty({N, K}, options);
  float* wp = w.data_ptr<float>();
  at::parallel_for(0, N, GRAIN, [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
#if defined(__AVX512F__)
      alignas(64) float ds[SEGMENT], ms[SEGMENT];
      for (int64_t s0 = 0; s0 < nb; s0 += SEGMENT) {
        const int64_t len = std::min(SEGMENT, nb - s0);
        row_scales(g, n, s0, len, ds, ms);
        for (int64_t i = 0; i < len; ++i) {
          __m512 w0, w1;
          g.block(n, s0 + i, ds[i], ms[i], w0, w1);
          _mm512_storeu_ps(wp + n * K + (s0 + i) * BLOCK, w0);
          _mm512_storeu_ps(wp + n * K + (s0 + i) * BLOCK + 16, w1);
        }
      }
#else
      for (int64_t b = 0; b < nb; ++b) g.block(n, b, wp + n * K + b * BLOCK);
#endif
    }
  });
  return w;
}

// Runs ``rows`` (grid_rows<T> of one grid) over M activation rows x [M, K] into y [M, N]: in
// tiles of TILE rows (then the remainder), output rows in parallel on torch's thread pool.
template <typename F>
void tiled_into(const float* xp, int64_t M, int64_t K, float* yp, int64_t N, F&& rows) {
  at::parallel_for(0, N, GRAIN, [&](int64_t n0, int64_t n1) {
    int64_t r = 0;
    for (; r + TILE <= M; r += TILE) rows(std::integral_constant<int, TILE>{}, xp + r * K, yp + r * N, n0, n1);
    switch (M - r) {
      case 3: rows(std::integral_constant<int, 3>{}, xp + r * K, yp + r * N, n0, n1); break;
      case 2: rows(std::integral_constant<int, 2>{}, xp + r * K, yp + r * N, n0, n1); break;
      case 1: rows(std::integral_constant<int, 1>{}, xp + r * K, yp + r * N, n0, n1); break;
      default: break;
    }
  });
}

// y [M, N] = x [M, K] @ w.T for the grid g's N weight rows.
template <typename Grid>
void grid_into(const Grid& g, const float* x, int64_t M, int64_t K, float* y, int64_t N) {
  tiled_into(x, M, K, y, N, [&](auto t, const float* xr, float* yr, int64_t n0, int64_t n1) {
    grid_rows<decltype(t)::value>(g, xr, K, yr, N, n0, n1);
  });
}

// The same from and into tensors (x checked).
template <typename Grid>
torch::Tensor grid_linear(const Grid& g, const torch::Tensor& x, int64_t N) {
  TORCH_CHECK(x.dim() == 2 && x.scalar_type() == torch::kFloat32, "x must be [M, K] float32");
  const auto xc = x.contiguous();
  const int64_t M = xc.size(0), K = xc.size(1);
  TORCH_CHECK(K % BLOCK == 0, "K must be a multiple of 32");
  auto y = torch::empty({M, N}, xc.options());
  grid_into(g, xc.data_ptr<float>(), M, K, y.data_ptr<float>(), N);
  return y;
}

}  // namespace

torch::Tensor q4_linear(torch::Tensor x, torch::Tensor packed, torch::Tensor d, torch::Tensor m) {
  const int64_t N = packed.size(0), K = x.size(1);
  TORCH_CHECK(packed.scalar_type() == torch::kUInt8 && packed.size(1) * 2 == K, "packed [N, K/2] uint8");
  TORCH_CHECK(d.is_contiguous() && m.is_contiguous() && packed.is_contiguous(), "contiguous");
  TORCH_CHECK(d.scalar_type() == torch::kHalf && m.scalar_type() == torch::kHalf, "d, m float16");
  return grid_linear(
      Q4Grid{packed.data_ptr<uint8_t>(), d.data_ptr<at::Half>(), m.data_ptr<at::Half>(), K}, x, N);
}

torch::Tensor q8_linear(torch::Tensor x, torch::Tensor q, torch::Tensor d) {
  const int64_t N = q.size(0), K = x.size(1);
  TORCH_CHECK(q.scalar_type() == torch::kInt8 && q.size(1) == K, "q [N, K] int8");
  TORCH_CHECK(d.is_contiguous() && q.is_contiguous(), "contiguous");
  TORCH_CHECK(d.scalar_type() == torch::kHalf, "d float16");
  return grid_linear(Q8Grid{q.data_ptr<int8_t>(), d.data_ptr<at::Half>(), K}, x, N);
}

torch::Tensor q4_dequant(torch::Tensor packed, torch::Tensor d, torch::Tensor m) {
  const int64_t K = packed.size(1) * 2;
  const Q4Grid g{packed.data_ptr<uint8_t>(), d.data_ptr<at::Half>(), m.data_ptr<at::Half>(), K};
  return dequant(g, packed.size(0), d.options().dtype(torch::kFloat32));
}

torch::Tensor q8_dequant(torch::Tensor q, torch::Tensor d) {
  const Q8Grid g{q.data_ptr<int8_t>(), d.data_ptr<at::Half>(), q.size(1)};
  return dequant(g, q.size(0), d.options().dtype(torch::kFloat32));
}
