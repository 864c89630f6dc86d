// Fused multi-tensor CPU kernels for LAMB, LANS and LARS (scaling_study.optim._native).
//
// Why a kernel of our own: an unfused LAMB/LANS step makes 15-30 passes over BERT-base's 440 MB
// of parameters; these kernels make 2-3 (moments + per-tensor squared norms in one pass, the
// trust-scaled update in another), which is what keeps LAMB and LANS within 1.5-2x of torch's
// fused AdamW on a CPU. The math mirrors scaling_study/optim/functional.py (the readable
// reference); tests compare the two.
//
// Conventions:
// * Every call takes a list of n tensors as arrays of data pointers and element counts. Work is cut
//   into fixed-size chunks (never crossing a tensor) and spread over OpenMP threads; reductions
//   are summed per chunk in double and then per tensor in chunk order, so norms do not depend on
//   the thread count.
// * dtype 0 = float32, 1 = bfloat16 (math in float32, state stored in the parameter's dtype,
//   round-to-nearest-even on store, as torch's fused Adam). Phase 1 re-reads what it stored, so
//   the norms belong to exactly the update phase 2 applies.
// * Per-tensor scalars (bias corrections, gradient scale, update scale) come in float arrays.
// * Phase 2 recomputes the update from the stored moments instead of keeping it in a buffer: the
//   same memory traffic as storing and re-reading it, and no extra parameter-sized state.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace {

constexpr int64_t kChunk = 1 << 15;  // elements per work item: 128 KiB of float32
constexpr int kLanes = 16;           // independent accumulators: lets the compiler vectorise sums

struct F32 {
  using T = float;
  static inline float load(const T* p, int64_t i) { return p[i]; }
  static inline void store(T* p, int64_t i, float x) { p[i] = x; }
};

struct BF16 {
  using T = uint16_t;
  static inline float load(const T* p, int64_t i) {
    uint32_t u = static_cast<uint32_t>(p[i]) << 16;
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
  }
  static inline void store(T* p, int64_t i, float x) {
    uint32_t u;
    std::memcpy(&u, &x, sizeof u);
    // round to nearest even; NaN stays a (quiet) NaN
    uint32_t rounded = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
    p[i] = std::isnan(x) ? static_cast<T>(0x7FC0u) : static_cast<T>(rounded);
  }
};

struct Chunk {
  int64_t tensor, begin, end;
};

std::vector<Chunk> make_chunks(int64_t n, const int64_t* numel) {
  std::vector<Chunk> chunks;
  for (int64_t t = 0; t < n; ++t)
    for (int64_t b = 0; b < numel[t]; b += kChunk)
      chunks.push_back({t, b, b + kChunk < numel[t] ? b + kChunk : numel[t]});
  return chunks;
}

// Runs body(chunk, partial) over all chunks in parallel; partial holds `k` doubles per chunk,
// which are then summed in chunk order into out[j * n + tensor] (j < k).
template <class Body>
void for_chunks(int64_t n, const int64_t* numel, int k, double* out, int nthreads, Body body) {
  std::vector<Chunk> chunks = make_chunks(n, numel);
  const int64_t nc = static_cast<int64_t>(chunks.size());
  std::vector<double> partial(static_cast<size_t>(nc * (k > 0 ? k : 1)), 0.0);
  // One chunk's worth of work runs inline: waking a thread pool costs more than it (and on a
  // loaded machine a thread may wait a whole scheduler slice to run). Chunks are handed out
  // dynamically, a few at a time: a thread that shares its core with other work (other Ray
  // workers, a data loader) then takes fewer chunks instead of holding everyone up.
  const int threads = static_cast<int>(nc < nthreads ? nc : nthreads);
#pragma omp parallel for schedule(dynamic, 4) num_threads(threads) if (threads > 1)
  for (int64_t c = 0; c < nc; ++c) body(chunks[c], &partial[c * k]);
  if (k == 0) return;
  for (int64_t j = 0; j < k * n; ++j) out[j] = 0.0;
  for (int64_t c = 0; c < nc; ++c)
    for (int j = 0; j < k; ++j) out[j * n + chunks[c].tensor] += partial[c * k + j];
}

// Calls f(i, lane) for i in [begin, end) in blocks of kLanes, so that per-lane accumulators
// (Lanes) turn into vector registers.
template <class F>
inline void blocked(int64_t begin, int64_t end, F f) {
  int64_t i = begin;
  for (; i + kLanes <= end; i += kLanes)
    for (int k = 0; k < kLanes; ++k) f(i + k, k);
  for (int k = 0; i < end; ++i, ++k) f(i, k);
}

// Sums of squares in kLanes double accumulators.
struct Lanes {
  double acc[kLanes] = {0};
  inline void add(int k, float x) { acc[k] += static_cast<double>(x) * x; }
  double total() const {
    double s = 0;
    for (double a : acc) s += a;
    return s;
  }
};

template <class D>
void sumsq(int64_t n, void** x, const int64_t* numel, double* out, int nthreads) {
  for_chunks(n, numel, 1, out, nthreads, [&](const Chunk& c, double* part) {
    const auto* p = static_cast<const typename D::T*>(x[c.tensor]);
    Lanes s;
    blocked(c.begin, c.end, [&](int64_t i, int k) { s.add(k, D::load(p, i)); });
    part[0] = s.total();
  });
}

// beta and 1 - beta, the latter computed in double by the caller: in float, 1 - 0.999f is off
// by 1.3e-5 relative, which moves an Adam step by ~1e-5 relative.
struct Beta {
  float b, one_minus_b;
};

// Adam moments for one element; returns the stored (possibly rounded) m and v.
template <class D>
inline void moments(typename D::T* __restrict__ m, typename D::T* __restrict__ v, int64_t i,
                    float g, Beta b1, Beta b2, float& mi, float& vi) {
  D::store(m, i, b1.b * D::load(m, i) + b1.one_minus_b * g);
  D::store(v, i, b2.b * D::load(v, i) + b2.one_minus_b * g * g);
  mi = D::load(m, i);
  vi = D::load(v, i);
}

// The per-chunk bodies below take their arrays as __restrict__ parameters: the tensors of one
// parameter never overlap, and saying so is what lets the compiler vectorise the loops.

// ---- LAMB: r = m_hat / (sqrt(v_hat) + eps) + wd * w;  w <- w - scale * r ----
template <class D, class T = typename D::T>
void lamb1_chunk(int64_t b, int64_t e, const T* __restrict__ w, const T* __restrict__ g,
                 T* __restrict__ m, T* __restrict__ v, float bc1, float bc2, Beta b1, Beta b2,
                 float eps, float wd, double* part) {
  Lanes sw, sr;
  blocked(b, e, [&](int64_t i, int k) {
    float mi, vi, wi = D::load(w, i);
    moments<D>(m, v, i, D::load(g, i), b1, b2, mi, vi);
    sw.add(k, wi);
    sr.add(k, (mi * bc1) / (std::sqrt(vi) * bc2 + eps) + wd * wi);
  });
  part[0] = sw.total();
  part[1] = sr.total();
}

template <class D, class T = typename D::T>
void lamb2_chunk(int64_t b, int64_t e, T* __restrict__ w, const T* __restrict__ m,
                 const T* __restrict__ v, float bc1, float bc2, float eps, float wd, float s) {
  for (int64_t i = b; i < e; ++i) {
    float wi = D::load(w, i);
    float r = (D::load(m, i) * bc1) / (std::sqrt(D::load(v, i)) * bc2 + eps) + wd * wi;
    D::store(w, i, wi - s * r);
  }
}

template <class D>
void lamb_phase1(int64_t n, void** w, void** g, void** m, void** v, const int64_t* numel,
                 const float* c1, const float* c2, Beta b1, Beta b2, float eps, float wd,
                 double* sq, int nthreads) {
  using T = typename D::T;
  for_chunks(n, numel, 2, sq, nthreads, [&](const Chunk& c, double* part) {
    const int64_t t = c.tensor;
    lamb1_chunk<D>(c.begin, c.end, static_cast<const T*>(w[t]), static_cast<const T*>(g[t]),
                   static_cast<T*>(m[t]), static_cast<T*>(v[t]), c1[t], c2[t], b1, b2, eps, wd,
                   part);
  });
}

template <class D>
void lamb_phase2(int64_t n, void** w, void** m, void** v, const int64_t* numel, const float* c1,
                 const float* c2, float eps, float wd, const float* scale, int nthreads) {
  using T = typename D::T;
  for_chunks(n, numel, 0, nullptr, nthreads, [&](const Chunk& c, double*) {
    const int64_t t = c.tensor;
    lamb2_chunk<D>(c.begin, c.end, static_cast<T*>(w[t]), static_cast<const T*>(m[t]),
                   static_cast<const T*>(v[t]), c1[t], c2[t], eps, wd, scale[t]);
  });
}

// ---- LANS: g_hat = g * ginv; d = sqrt(v_hat) + eps; r1 = m_hat / d + wd * w;
//      r2 = g_hat / d + wd * w;  w <- w - (s1 * r1 + s2 * r2) ----
template <class D, class T = typename D::T>
void lans1_chunk(int64_t b, int64_t e, const T* __restrict__ w, const T* __restrict__ g,
                 T* __restrict__ m, T* __restrict__ v, float gs, float bc1, float bc2, Beta b1,
                 Beta b2, float eps, float wd, double* part) {
  Lanes sw, s1, s2;
  blocked(b, e, [&](int64_t i, int k) {
    float mi, vi, wi = D::load(w, i), gh = D::load(g, i) * gs;
    moments<D>(m, v, i, gh, b1, b2, mi, vi);
    float d = std::sqrt(vi) * bc2 + eps;
    sw.add(k, wi);
    s1.add(k, (mi * bc1) / d + wd * wi);
    s2.add(k, gh / d + wd * wi);
  });
  part[0] = sw.total();
  part[1] = s1.total();
  part[2] = s2.total();
}

template <class D, class T = typename D::T>
void lans2_chunk(int64_t b, int64_t e, T* __restrict__ w, const T* __restrict__ g,
                 const T* __restrict__ m, const T* __restrict__ v, float gs, float bc1, float bc2,
                 float eps, float wd, float s1, float s2) {
  for (int64_t i = b; i < e; ++i) {
    float wi = D::load(w, i), gh = D::load(g, i) * gs;
    float d = std::sqrt(D::load(v, i)) * bc2 + eps;
    float r1 = (D::load(m, i) * bc1) / d + wd * wi, r2 = gh / d + wd * wi;
    D::store(w, i, wi - (s1 * r1 + s2 * r2));
  }
}

template <class D>
void lans_phase1(int64_t n, void** w, void** g, void** m, void** v, const int64_t* numel,
                 const float* ginv, const float* c1, const float* c2, Beta b1, Beta b2,
                 float eps, float wd, double* sq, int nthreads) {
  using T = typename D::T;
  for_chunks(n, numel, 3, sq, nthreads, [&](const Chunk& c, double* part) {
    const int64_t t = c.tensor;
    lans1_chunk<D>(c.begin, c.end, static_cast<const T*>(w[t]), static_cast<const T*>(g[t]),
                   static_cast<T*>(m[t]), static_cast<T*>(v[t]), ginv[t], c1[t], c2[t], b1, b2,
                   eps, wd, part);
  });
}

template <class D>
void lans_phase2(int64_t n, void** w, void** g, void** m, void** v, const int64_t* numel,
                 const float* ginv, const float* c1, const float* c2, float eps, float wd,
                 const float* scale1, const float* scale2, int nthreads) {
  using T = typename D::T;
  for_chunks(n, numel, 0, nullptr, nthreads, [&](const Chunk& c, double*) {
    const int64_t t = c.tensor;
    lans2_chunk<D>(c.begin, c.end, static_cast<T*>(w[t]), static_cast<const T*>(g[t]),
                   static_cast<const T*>(m[t]), static_cast<const T*>(v[t]), ginv[t], c1[t],
                   c2[t], eps, wd, scale1[t], scale2[t]);
  });
}

// ---- LARS: buf <- momentum * buf + scale * (g + wd * w);  w <- w - buf ----
template <class D, class T = typename D::T>
void lars_norms_chunk(int64_t b, int64_t e, const T* __restrict__ w, const T* __restrict__ g,
                      double* part) {
  Lanes sw, sg;
  blocked(b, e, [&](int64_t i, int k) {
    sw.add(k, D::load(w, i));
    sg.add(k, D::load(g, i));
  });
  part[0] = sw.total();
  part[1] = sg.total();
}

template <class D, class T = typename D::T>
void lars_apply_chunk(int64_t b, int64_t e, T* __restrict__ w, const T* __restrict__ g,
                      T* __restrict__ buf, float momentum, float wd, float s) {
  for (int64_t i = b; i < e; ++i) {
    float wi = D::load(w, i);
    D::store(buf, i, momentum * D::load(buf, i) + s * (D::load(g, i) + wd * wi));
    D::store(w, i, wi - D::load(buf, i));
  }
}

template <class D>
void lars_norms(int64_t n, void** w, void** g, const int64_t* numel, double* sq, int nthreads) {
  using T = typename D::T;
  for_chunks(n, numel, 2, sq, nthreads, [&](const Chunk& c, double* part) {
    lars_norms_chunk<D>(c.begin, c.end, static_cast<const T*>(w[c.tensor]),
                        static_cast<const T*>(g[c.tensor]), part);
  });
}

template <class D>
void lars_apply(int64_t n, void** w, void** g, void** buf, const int64_t* numel, float momentum,
                float wd, const float* scale, int nthreads) {
  using T = typename D::T;
  for_chunks(n, numel, 0, nullptr, nthreads, [&](const Chunk& c, double*) {
    const int64_t t = c.tensor;
    lars_apply_chunk<D>(c.begin, c.end, static_cast<T*>(w[t]), static_cast<const T*>(g[t]),
                        static_cast<T*>(buf[t]), momentum, wd, scale[t]);
  });
}

}  // namespace

// dtype dispatch: 0 = float32, 1 = bfloat16.
#define SS_DISPATCH(dtype, fn, ...) \
  ((dtype) == 1 ? fn<BF16>(__VA_ARGS__) : fn<F32>(__VA_ARGS__))

extern "C" {

int ss_abi_version() { return 2; }

void ss_sumsq(int dtype, int64_t n, void** x, const int64_t* numel, double* out, int nthreads) {
  SS_DISPATCH(dtype, sumsq, n, x, numel, out, nthreads);
}

void ss_lamb_phase1(int dtype, int64_t n, void** w, void** g, void** m, void** v,
                    const int64_t* numel, const float* c1, const float* c2, float b1,
                    float one_minus_b1, float b2, float one_minus_b2, float eps, float wd,
                    double* sq, int nthreads) {
  SS_DISPATCH(dtype, lamb_phase1, n, w, g, m, v, numel, c1, c2, Beta{b1, one_minus_b1},
              Beta{b2, one_minus_b2}, eps, wd, sq, nthreads);
}

void ss_lamb_phase2(int dtype, int64_t n, void** w, void** m, void** v, const int64_t* numel,
                    const float* c1, const float* c2, float eps, float wd, const float* scale,
                    int nthreads) {
  SS_DISPATCH(dtype, lamb_phase2, n, w, m, v, numel, c1, c2, eps, wd, scale, nthreads);
}

void ss_lans_phase1(int dtype, int64_t n, void** w, void** g, void** m, void** v,
                    const int64_t* numel, const float* ginv, const float* c1, const float* c2,
                    float b1, float one_minus_b1, float b2, float one_minus_b2, float eps,
                    float wd, double* sq, int nthreads) {
  SS_DISPATCH(dtype, lans_phase1, n, w, g, m, v, numel, ginv, c1, c2, Beta{b1, one_minus_b1},
              Beta{b2, one_minus_b2}, eps, wd, sq, nthreads);
}

void ss_lans_phase2(int dtype, int64_t n, void** w, void** g, void** m, void** v,
                    const int64_t* numel, const float* ginv, const float* c1, const float* c2,
                    float eps, float wd, const float* scale1, const float* scale2, int nthreads) {
  SS_DISPATCH(dtype, lans_phase2, n, w, g, m, v, numel, ginv, c1, c2, eps, wd, scale1, scale2,
              nthreads);
}

void ss_lars_norms(int dtype, int64_t n, void** w, void** g, const int64_t* numel, double* sq,
                   int nthreads) {
  SS_DISPATCH(dtype, lars_norms, n, w, g, numel, sq, nthreads);
}

void ss_lars_apply(int dtype, int64_t n, void** w, void** g, void** buf, const int64_t* numel,
                   float momentum, float wd, const float* scale, int nthreads) {
  SS_DISPATCH(dtype, lars_apply, n, w, g, buf, numel, momentum, wd, scale, nthreads);
}

}  // extern "C"
