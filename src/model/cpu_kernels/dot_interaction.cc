// Fused dot interaction for MindSpore's CPU Custom op (func_type="aot"); see kernels.py.
//
// DotInteraction:      (x float32 [B, D], emb float32 [B, S, D]) -> out float32 [B, D + P]
//                      (emb) -> out float32 [B, P]                       (no dense features)
//   out = [x, <v_i, v_j> for i > j (or i >= j with the diagonal)], v = (x, emb_1 .. emb_S): the gram's lower
//   triangle, computed directly (no [B, n, n] gram, no gather, no concat). P = n(n-1)/2 or n(n+1)/2 with n = S + 1
//   (S without x); the variant is read from out's width.
// DotInteractionGrad:  (x, emb, dout float32 [B, D + P]) -> (dx float32 [B, D], demb float32 [B, S, D])
//                      (emb, dout [B, P]) -> demb
//   dv_i = sum_j g_ij v_j (g symmetric from the triangle, the diagonal counted twice), dx += dout[:, :D].
// Every sample is computed by one thread in a fixed order: the result does not depend on the thread count.
// Batches under kParallelWork multiply-adds run on the calling thread: at batch 128 the work (~0.7M) is shorter
// than waking OpenMP's threads, whose spinning afterwards also takes the cores from MindSpore's own pool.
#include <cstdint>
#include <cstring>

namespace {

struct Shape {
  int64_t batch, slots, dim, n, pairs;
  bool with_x, diag;
};

constexpr int64_t kParallelWork = int64_t{1} << 22;

bool IsFloat(const char *dtype) { return std::strcmp(dtype, "float32") == 0; }

// Works out the layout from the emb shape and the interaction output's width; false if they do not fit.
bool Layout(const int64_t *emb_shape, int64_t out_width, bool with_x, Shape *s) {
  s->batch = emb_shape[0];
  s->slots = emb_shape[1];
  s->dim = emb_shape[2];
  s->with_x = with_x;
  s->n = s->slots + (with_x ? 1 : 0);
  int64_t pairs = out_width - (with_x ? s->dim : 0);
  if (pairs == s->n * (s->n - 1) / 2) {
    s->diag = false;
  } else if (pairs == s->n * (s->n + 1) / 2) {
    s->diag = true;
  } else {
    return false;
  }
  s->pairs = pairs;
  return true;
}

inline const float *Vec(const Shape &s, const float *x, const float *emb, int64_t b, int64_t i) {
  if (s.with_x) {
    return i == 0 ? x + b * s.dim : emb + (b * s.slots + i - 1) * s.dim;
  }
  return emb + (b * s.slots + i) * s.dim;
}

inline float Dot(const float *a, const float *b, int64_t dim) {
  float acc = 0.0f;
  for (int64_t d = 0; d < dim; ++d) acc += a[d] * b[d];
  return acc;
}

void Forward(const Shape &s, const float *x, const float *emb, float *out) {
  const int64_t width = s.pairs + (s.with_x ? s.dim : 0);
#pragma omp parallel for schedule(static) if (s.batch * s.pairs * s.dim >= kParallelWork)
  for (int64_t b = 0; b < s.batch; ++b) {
    float *row = out + b * width;
    if (s.with_x) {
      std::memcpy(row, x + b * s.dim, sizeof(float) * s.dim);
      row += s.dim;
    }
    int64_t k = 0;
    for (int64_t i = 0; i < s.n; ++i) {
      const float *vi = Vec(s, x, emb, b, i);
      const int64_t last = s.diag ? i + 1 : i;
      for (int64_t j = 0; j < last; ++j) row[k++] = Dot(vi, Vec(s, x, emb, b, j), s.dim);
    }
  }
}

void Backward(const Shape &s, const float *x, const float *emb, const float *dout, float *dx, float *demb) {
  const int64_t width = s.pairs + (s.with_x ? s.dim : 0);
  const int64_t dim = s.dim;
#pragma omp parallel for schedule(static) if (s.batch * s.pairs * s.dim >= kParallelWork)
  for (int64_t b = 0; b < s.batch; ++b) {
    const float *g = dout + b * width;
    float *dv0 = s.with_x ? dx + b * dim : nullptr;
    if (s.with_x) {
      std::memcpy(dv0, g, sizeof(float) * dim);
      g += dim;
    }
    std::memset(demb + b * s.slots * dim, 0, sizeof(float) * s.slots * dim);
    int64_t k = 0;
    for (int64_t i = 0; i < s.n; ++i) {
      const float *vi = Vec(s, x, emb, b, i);
      float *di = (s.with_x && i == 0) ? dv0 : demb + (b * s.slots + i - (s.with_x ? 1 : 0)) * dim;
      for (int64_t j = 0; j < i; ++j) {
        const float w = g[k++];
        const float *vj = Vec(s, x, emb, b, j);
        float *dj = (s.with_x && j == 0) ? dv0 : demb + (b * s.slots + j - (s.with_x ? 1 : 0)) * dim;
        for (int64_t d = 0; d < dim; ++d) {
          di[d] += w * vj[d];
          dj[d] += w * vi[d];
        }
      }
      if (s.diag) {
        const float w2 = 2.0f * g[k++];
        for (int64_t d = 0; d < dim; ++d) di[d] += w2 * vi[d];
      }
    }
  }
}

}  // namespace

// params: [x,] emb, out.  Returns 0, or 1 for a dtype or shape it was not built for.
extern "C" int DotInteraction(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                              void *stream, void *extra) {
  const bool with_x = nparam == 3;
  if (nparam != 2 && nparam != 3) return 1;
  const int e = with_x ? 1 : 0, o = e + 1;
  for (int p = 0; p < nparam; ++p)
    if (!IsFloat(dtypes[p])) return 1;
  if (ndims[e] != 3 || ndims[o] != 2) return 1;
  Shape s;
  if (!Layout(shapes[e], shapes[o][1], with_x, &s)) return 1;
  if (with_x && (ndims[0] != 2 || shapes[0][1] != s.dim)) return 1;
  Forward(s, with_x ? static_cast<const float *>(params[0]) : nullptr, static_cast<const float *>(params[e]),
          static_cast<float *>(params[o]));
  return 0;
}

// params: [x,] emb, dout, [dx,] demb.
extern "C" int DotInteractionGrad(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                                  void *stream, void *extra) {
  const bool with_x = nparam == 5;
  if (nparam != 3 && nparam != 5) return 1;
  for (int p = 0; p < nparam; ++p)
    if (!IsFloat(dtypes[p])) return 1;
  const int e = with_x ? 1 : 0, g = e + 1;
  Shape s;
  if (ndims[e] != 3 || ndims[g] != 2 || !Layout(shapes[e], shapes[g][1], with_x, &s)) return 1;
  const float *x = with_x ? static_cast<const float *>(params[0]) : nullptr;
  float *dx = with_x ? static_cast<float *>(params[3]) : nullptr;
  float *demb = static_cast<float *>(params[with_x ? 4 : 2]);
  Backward(s, x, static_cast<const float *>(params[e]), static_cast<const float *>(params[g]), dx, demb);
  return 0;
}
