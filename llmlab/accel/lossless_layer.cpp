// One decoder layer of the llama layout (RMSNorm, q/k/v with rotary embeddings, attention,
// o_proj, RMSNorm, SiLU-gated MLP) in two native calls, for decode-sized passes of a
// quant=lossless model. Compiled after lossless_kernel.cpp, in the same unit (it uses the grids).
//
// Why by hand: a decode step of a 135M model is ~150 aten ops per layer, each dispatched from
// Python (about 9 ms of a 23 ms token on this machine), and torch.compile does not pay off on
// CPU here. The arithmetic is the module path's, step by step, in float32; only the order of
// sums differs (and contractions into fused multiply-adds), as between two matmul kernels.
//
// A linear layer arrives as four tensors: codes (uint8 packed Q4 or int8 Q8), d, m (empty for
// Q8) and bias (empty when none). Cache updates stay in Python (transformers' cache classes).

#include <cmath>
#include <vector>

namespace {

using Linear = std::vector<torch::Tensor>;

int64_t out_features(const Linear& lin) { return lin[0].size(0); }

// y [M, N] = x [M, K] @ w.T + bias for a grid linear layer.
void linear_into(const Linear& lin, const float* x, int64_t M, int64_t K, float* y) {
  TORCH_CHECK(lin.size() == 4, "a linear layer is [codes, d, m, bias]");
  const auto& codes = lin[0];
  const int64_t N = codes.size(0);
  if (codes.scalar_type() == torch::kUInt8) {
    TORCH_CHECK(codes.size(1) * 2 == K, "Q4 codes must be [N, K/2]");
    grid_into(Q4Grid{codes.data_ptr<uint8_t>(), lin[1].data_ptr<at::Half>(),
                     lin[2].data_ptr<at::Half>(), K},
              x, M, K, y, N);
  } else {
    TORCH_CHECK(codes.scalar_type() == torch::kInt8 && codes.size(1) == K, "Q8 codes [N, K]");
    grid_into(Q8Grid{codes.data_ptr<int8_t>(), lin[1].data_ptr<at::Half>(), K}, x, M, K, y, N);
  }
  if (lin[3].numel()) {
    const float* b = lin[3].data_ptr<float>();
    for (int64_t r = 0; r < M; ++r)
      for (int64_t n = 0; n < N; ++n) y[r * N + n] += b[n];
  }
}

// sum of a[i] * b[i]: vectorized (four accumulators) where AVX-512 is, else the plain loop.
inline float dot(const float* a, const float* b, int64_t n) {
  int64_t i = 0;
  float s = 0.f;
#if defined(__AVX512F__)
  __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                   _mm512_setzero_ps()};
  for (; i + 64 <= n; i += 64)
    for (int u = 0; u < 4; ++u)
      acc[u] = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16 * u), _mm512_loadu_ps(b + i + 16 * u),
                               acc[u]);
  for (; i + 16 <= n; i += 16)
    acc[0] = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc[0]);
  s = _mm512_reduce_add_ps(
      _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3])));
#endif
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

// out = weight * (x * rsqrt(mean(x^2) + eps)) per row, as LlamaRMSNorm computes it.
void rms_norm(const float* x, const float* weight, double eps, int64_t M, int64_t H, float* out) {
  for (int64_t r = 0; r < M; ++r) {
    const float* xr = x + r * H;
    const float sq = dot(xr, xr, H);
    const float inv = 1.f / std::sqrt(sq / static_cast<float>(H) + static_cast<float>(eps));
    for (int64_t i = 0; i < H; ++i) out[r * H + i] = weight[i] * (xr[i] * inv);
  }
}

// Rotary embedding of one head vector (rotate_half layout: pairs i and i + D/2).
void rotate(const float* in, const float* cos, const float* sin, int64_t D, float* out) {
  const int64_t half = D / 2;
  for (int64_t i = 0; i < half; ++i) {
    out[i] = in[i] * cos[i] - in[i + half] * sin[i];
    out[i + half] = in[i + half] * cos[i + half] + in[i] * sin[i + half];
  }
}

}  // namespace

// Input norm, the fused q/k/v projection and rotary embeddings for T new positions of one
// sequence: (q [1, H, T, D], k [1, Hkv, T, D], v [1, Hkv, T, D]), ready for the cache.
std::vector<torch::Tensor> layer_attn_input(torch::Tensor x, torch::Tensor norm_weight,
                                            double eps, Linear qkv, torch::Tensor cos,
                                            torch::Tensor sin, int64_t heads, int64_t kv_heads,
                                            int64_t head_dim) {
  TORCH_CHECK(x.dim() == 3 && x.size(0) == 1 && x.is_contiguous(), "x must be [1, T, hidden]");
  const int64_t T = x.size(1), H = x.size(2), D = head_dim;
  TORCH_CHECK(out_features(qkv) == (heads + 2 * kv_heads) * D, "q/k/v rows");
  const auto cs = cos.contiguous(), sn = sin.contiguous();
  TORCH_CHECK(cs.numel() == T * D && sn.numel() == T * D, "cos/sin must be [1, T, head_dim]");
  const auto opts = x.options();
  auto h = torch::empty({T, H}, opts);
  rms_norm(x.data_ptr<float>(), norm_weight.data_ptr<float>(), eps, T, H, h.data_ptr<float>());
  const int64_t N = out_features(qkv);
  auto y = torch::empty({T, N}, opts);
  linear_into(qkv, h.data_ptr<float>(), T, H, y.data_ptr<float>());
  auto q = torch::empty({1, heads, T, D}, opts);
  auto k = torch::empty({1, kv_heads, T, D}, opts);
  auto v = torch::empty({1, kv_heads, T, D}, opts);
  const float *yp = y.data_ptr<float>(), *cp = cs.data_ptr<float>(), *sp = sn.data_ptr<float>();
  float *qp = q.data_ptr<float>(), *kp = k.data_ptr<float>(), *vp = v.data_ptr<float>();
  for (int64_t t = 0; t < T; ++t) {
    const float* row = yp + t * N;
    for (int64_t hd = 0; hd < heads; ++hd)
      rotate(row + hd * D, cp + t * D, sp + t * D, D, qp + (hd * T + t) * D);
    for (int64_t g = 0; g < kv_heads; ++g) {
      rotate(row + (heads + g) * D, cp + t * D, sp + t * D, D, kp + (g * T + t) * D);
      std::copy_n(row + (heads + kv_heads + g) * D, D, vp + (g * T + t) * D);
    }
  }
  return {q, k, v};
}

// Attention of the T new queries over the cache (keys/values [1, Hkv, L, D], the new ones last),
// o_proj and the residual, then the post-attention norm, the SiLU-gated MLP (gate and up fused
// in one [2I, hidden] layer) and the second residual: the layer's output [1, T, hidden].
// ``mask`` is transformers' mask for the layer ([1, 1, T, L], boolean or additive) or empty:
// then query t sees positions up to L - T + t.
torch::Tensor layer_attn_output_mlp(torch::Tensor x, torch::Tensor q, torch::Tensor keys,
                                    torch::Tensor values, torch::Tensor mask, double scaling,
                                    Linear o_proj, torch::Tensor post_norm_weight, double eps,
                                    Linear gate_up, Linear down) {
  const int64_t T = x.size(1), H = x.size(2), heads = q.size(1), D = q.size(3);
  const auto kc = keys.contiguous(), vc = values.contiguous();
  const int64_t kv_heads = kc.size(1), L = kc.size(2), group = heads / kv_heads;
  const auto opts = x.options();
  const bool has_mask = mask.numel() > 0;
  torch::Tensor mk;
  if (has_mask) {
    mk = mask.reshape({-1, L}).contiguous();
    TORCH_CHECK(mk.size(0) == T, "mask must be [1, 1, T, L]");
  }
  const bool bool_mask = has_mask && mk.scalar_type() == torch::kBool;
  if (has_mask && !bool_mask) mk = mk.to(torch::kFloat32);
  const bool* allowed = bool_mask ? mk.data_ptr<bool>() : nullptr;
  const float* bias = has_mask && !bool_mask ? mk.data_ptr<float>() : nullptr;

  // Attention, head by head; softmax with the running maximum subtracted.
  auto attn = torch::empty({T, heads * D}, opts);
  const float *qp = q.data_ptr<float>(), *kp = kc.data_ptr<float>(), *vp = vc.data_ptr<float>();
  float* ap = attn.data_ptr<float>();
  std::vector<float> score(L);
  for (int64_t hd = 0; hd < heads; ++hd) {
    const float* kh = kp + (hd / group) * L * D;
    const float* vh = vp + (hd / group) * L * D;
    for (int64_t t = 0; t < T; ++t) {
      const float* qt = qp + (hd * T + t) * D;
      float top = -INFINITY;
      for (int64_t j = 0; j < L; ++j) {
        const float add = bias ? bias[t * L + j] : 0.f;
        const bool seen = allowed ? allowed[t * L + j] : (bias ? add != -INFINITY : j <= L - T + t);
        if (!seen) {
          score[j] = -INFINITY;
          continue;
        }
        score[j] = dot(qt, kh + j * D, D) * static_cast<float>(scaling) + add;
        top = std::max(top, score[j]);
      }
      float* out = ap + t * heads * D + hd * D;
      std::fill_n(out, D, 0.f);
      float total = 0.f;
      for (int64_t j = 0; j < L; ++j) {
        if (score[j] == -INFINITY) continue;
        const float p = std::exp(score[j] - top);
        total += p;
        for (int64_t i = 0; i < D; ++i) out[i] += p * vh[j * D + i];
      }
      for (int64_t i = 0; i < D; ++i) out[i] /= total;
    }
  }

  // o_proj and the residual.
  auto x1 = torch::empty({1, T, H}, opts);
  float* x1p = x1.data_ptr<float>();
  linear_into(o_proj, ap, T, heads * D, x1p);
  const float* xp = x.data_ptr<float>();
  for (int64_t i = 0; i < T * H; ++i) x1p[i] = xp[i] + x1p[i];

  // MLP: down(silu(gate(h)) * up(h)) with h the normed residual, then the residual.
  auto h = torch::empty({T, H}, opts);
  rms_norm(x1p, post_norm_weight.data_ptr<float>(), eps, T, H, h.data_ptr<float>());
  const int64_t I = out_features(gate_up) / 2;
  auto gu = torch::empty({T, 2 * I}, opts);
  float* gp = gu.data_ptr<float>();
  linear_into(gate_up, h.data_ptr<float>(), T, H, gp);
  // ATen's own (vectorized) SiLU: the activation is the module path's to the bit.
  const auto act = at::silu(gu.narrow(1, 0, I)).mul_(gu.narrow(1, I, I));
  const float* actp = act.data_ptr<float>();
  auto out = torch::empty({1, T, H}, opts);
  float* op = out.data_ptr<float>();
  linear_into(down, actp, T, I, op);
  for (int64_t i = 0; i < T * H; ++i) op[i] = x1p[i] + op[i];
  return out;
}
