/* The C pass (see _fused.c): the float32, float16 and bfloat16 kernels. */
#ifndef FUSED_NARROW_H
#define FUSED_NARROW_H

#include "fused_common.h"

/* ---- float32, float16, bfloat16: bounds and counts on 16 float lanes, sums in float64 ------ */

typedef float vfw __attribute__((vector_size(64)));
typedef int vi32w __attribute__((vector_size(64)));
typedef unsigned int vu32w __attribute__((vector_size(64)));
typedef unsigned short vu16w __attribute__((vector_size(32)));
#if defined(__FLT16_MAX__) && defined(__x86_64__)
typedef _Float16 vhw __attribute__((vector_size(32)));
#define HAVE_FLOAT16 1
#endif

/* F16C (vcvtph2ps) is there: the x86-64-v3 and v4 clones convert float16 with one instruction;
 * elsewhere float16 is converted with integer operations (set in PyInit__fused). */
static int use_f16c = 0;

INLINE vfw load16_f32(const char *p) { vfw x; memcpy(&x, p, sizeof x); return x; }
INLINE vfw load16_bf16(const char *p) {
    vu16w h;
    memcpy(&h, p, sizeof h);
    return (vfw)(__builtin_convertvector(h, vu32w) << 16);
}
INLINE vfw load16_f16(const char *p) {
#ifdef HAVE_FLOAT16
    if (use_f16c) {
        vhw h;
        memcpy(&h, p, sizeof h);
        return __builtin_convertvector(h, vfw);
    }
#endif
    vu16w h;
    memcpy(&h, p, sizeof h);
    vu32w w = __builtin_convertvector(h, vu32w);
    vu32w em = w & 0x7fffu, bits = em << 13;
    vi32w special = (vi32w)(em >= 0x7c00u);
    vfw f = (vfw)bits * 0x1p112f;             /* exact, subnormals included */
    vfw g = (vfw)(bits | 0x7f800000u);        /* inf and NaN */
    vfw out = (vfw)(((vi32w)f & ~special) | ((vi32w)g & special));
    return (vfw)((vu32w)out | ((w & 0x8000u) << 16));
}
INLINE float get1_f32(const char *p) { float v; memcpy(&v, p, 4); return v; }
INLINE float get1_f16(const char *p) { uint16_t v; memcpy(&v, p, 2); return half_to_float(v); }
#define get1_bf16_strided get1_bf16
#define load16_bf16_strided load16_bf16
#define get1_f16_strided get1_f16
#define load16_f16_strided load16_f16
INLINE float get1_bf16(const char *p) { uint16_t v; memcpy(&v, p, 2); return bf16_to_float(v); }

/* Per-lane state of a block: lane L holds the elements at offsets L mod 16 of the block; its
 * sums sit in s1[L / 8][L % 8]. */
typedef short vk __attribute__((vector_size(64))); /* 32 half-precision values (as integers) */
typedef unsigned short vku __attribute__((vector_size(64)));

typedef struct {
    vfw lo, hi;
    vi32w z, nan, pinf, ninf;
    vd s1[2], s2[2];
    /* float16/bfloat16 fast path: bounds and zeros on 32 lanes of order keys (see half_key) */
    vk klo, khi, kz;
} NarrowLanes;

INLINE void narrow_lane(NarrowLanes *L, int lane, float x, double sc, double c, int masked) {
    int k = lane >> 3, j = lane & 7;
    int fin = !masked || (x - x) == 0.0f;
    double d = masked ? (fin ? (double)x * sc - c : 0.0) : (double)x - c;
    if (fin && x < L->lo[lane])
        L->lo[lane] = x;
    if (fin && x > L->hi[lane])
        L->hi[lane] = x;
    L->s1[k][j] += d;
    L->s2[k][j] += d * d;
    L->z[lane] += (x == 0.0f);
    if (masked) {
        L->nan[lane] += (x != x);
        L->pinf[lane] += (x == __builtin_inff());
        L->ninf[lane] += (x == -__builtin_inff());
    }
}

static void narrow_lanes_init(NarrowLanes *L) {
    for (int lane = 0; lane < 32; lane++) { /* keys of NaN: never taken as a bound */
        L->klo[lane] = 0x7fff;
        L->khi[lane] = -0x8000;
        L->kz[lane] = 0;
    }
    for (int lane = 0; lane < 16; lane++) {
        L->lo[lane] = __builtin_inff();
        L->hi[lane] = -__builtin_inff();
        L->z[lane] = L->nan[lane] = L->pinf[lane] = L->ninf[lane] = 0;
        L->s1[lane >> 3][lane & 7] = L->s2[lane >> 3][lane & 7] = 0.0;
    }
}

/* The order key of a float16 or bfloat16 bit pattern: a signed integer in the order of the
 * values (negative values' magnitude bits flipped), so that bounds are integer min/max. */
INLINE short half_key(unsigned short h) { return (short)(h ^ ((h & 0x8000u) ? 0x7fffu : 0u)); }

static void narrow_lanes_close(const NarrowLanes *L, Part *out, int kind) {
    double lo = __builtin_inf(), hi = -__builtin_inf(), s1 = 0.0, s2 = 0.0;
    long long z = 0, nan = 0, pinf = 0, ninf = 0;
    for (int lane = 0; lane < 32; lane++) { /* the half fast path's keys (NaN ones are ignored) */
        float f[2];
        for (int e = 0; e < 2; e++) {
            unsigned short h = (unsigned short)half_key((unsigned short)(e ? L->khi[lane] : L->klo[lane])); /* an involution */
            f[e] = kind == K_F16 ? half_to_float(h) : bf16_to_float(h);
        }
        lo = f[0] < lo ? f[0] : lo;
        hi = f[1] > hi ? f[1] : hi;
        z += L->kz[lane];
    }
    for (int lane = 0; lane < 16; lane++) { /* a fixed order */
        int k = lane >> 3, j = lane & 7;
        lo = L->lo[lane] < lo ? L->lo[lane] : lo;
        hi = L->hi[lane] > hi ? L->hi[lane] : hi;
        s1 += L->s1[k][j];
        s2 += L->s2[k][j];
        z += L->z[lane];
        nan += L->nan[lane];
        pinf += L->pinf[lane];
        ninf += L->ninf[lane];
    }
    /* -0.0 and +0.0 are equal: one bound for both, whichever kernel found it */
    *out = (Part){lo == 0.0 ? 0.0 : lo, hi == 0.0 ? 0.0 : hi, s1, s2, 0, 0, z, nan, pinf, ninf};
}

INLINE vf low_half(vfw x) { vf h; memcpy(&h, &x, sizeof h); return h; }
INLINE vf high_half(vfw x) { vf h; memcpy(&h, (const char *)&x + sizeof h, sizeof h); return h; }
INLINE vl low_mask(vi32w m) { vi32 h; memcpy(&h, &m, sizeof h); return __builtin_convertvector(h, vl); }
INLINE vl high_mask(vi32w m) { vi32 h; memcpy(&h, (const char *)&m + sizeof h, sizeof h); return __builtin_convertvector(h, vl); }

/* 16 elements, no NaN or inf expected (a block that has some is done again, masked). */
#define NARROW_STEP_FAST(X)                                                                     \
    do {                                                                                       \
        vfw x_ = (X);                                                                          \
        vi32w lt_ = x_ < lo;                                                                   \
        lo = (vfw)(((vi32w)x_ & lt_) | ((vi32w)lo & ~lt_));                                    \
        vi32w gt_ = x_ > hi;                                                                   \
        hi = (vfw)(((vi32w)x_ & gt_) | ((vi32w)hi & ~gt_));                                    \
        z -= (x_ == fzero);                                                                    \
        vd a_ = __builtin_convertvector(low_half(x_), vd) - vc;                                \
        vd b_ = __builtin_convertvector(high_half(x_), vd) - vc;                               \
        a0 += a_;                                                                              \
        q0 += a_ * a_;                                                                         \
        a1 += b_;                                                                              \
        q1 += b_ * b_;                                                                         \
    } while (0)

/* 16 elements, NaN and inf counted and left out of the bounds and sums. */
#define NARROW_STEP_MASKED(X)                                                                   \
    do {                                                                                       \
        vfw x_ = (X);                                                                          \
        vi32w fin_ = (x_ - x_) == fzero; /* false for NaN and +-inf */                         \
        vi32w lt_ = (x_ < lo) & fin_;                                                          \
        lo = (vfw)(((vi32w)x_ & lt_) | ((vi32w)lo & ~lt_));                                    \
        vi32w gt_ = (x_ > hi) & fin_;                                                          \
        hi = (vfw)(((vi32w)x_ & gt_) | ((vi32w)hi & ~gt_));                                    \
        z -= (x_ == fzero);                                                                    \
        nn -= (x_ != x_);                                                                      \
        pi -= (x_ == finf);                                                                    \
        mi -= (x_ == -finf);                                                                   \
        vd a_ = (vd)((vl)(__builtin_convertvector(low_half(x_), vd) * vsc - vc) & low_mask(fin_)); \
        vd b_ = (vd)((vl)(__builtin_convertvector(high_half(x_), vd) * vsc - vc) & high_mask(fin_)); \
        a0 += a_;                                                                              \
        q0 += a_ * a_;                                                                         \
        a1 += b_;                                                                              \
        q1 += b_ * b_;                                                                         \
    } while (0)

#define NARROW_SEGMENT(NAME, SIZE)                                                              \
    INLINE void NAME##_segment(NarrowLanes *L, const char *p, Py_ssize_t count, Py_ssize_t stride, \
                               Py_ssize_t offset, double sc, double c, int masked) {           \
        const vd vsc = {sc, sc, sc, sc, sc, sc, sc, sc}, vc = {c, c, c, c, c, c, c, c};         \
        const float inf = __builtin_inff();                                                    \
        const vfw fzero = {0}, finf = {inf, inf, inf, inf, inf, inf, inf, inf, inf, inf, inf, inf, inf, inf, inf, inf}; \
        Py_ssize_t i = 0;                                                                      \
        for (; i < count && ((offset + i) & 15); i++) /* up to the next 16-lane boundary */    \
            narrow_lane(L, (int)((offset + i) & 15), get1_##NAME(p + i * stride), sc, c, masked); \
        if (i + 16 <= count) {                                                                 \
            vfw lo = L->lo, hi = L->hi;                                                        \
            vi32w z = L->z, nn = L->nan, pi = L->pinf, mi = L->ninf;                           \
            vd a0 = L->s1[0], a1 = L->s1[1], q0 = L->s2[0], q1 = L->s2[1];                      \
            if (stride == SIZE && masked) {                                                    \
                for (; i + 16 <= count; i += 16)                                               \
                    NARROW_STEP_MASKED(load16_##NAME(p + i * SIZE));                           \
            } else if (stride == SIZE) {                                                       \
                for (; i + 16 <= count; i += 16)                                               \
                    NARROW_STEP_FAST(load16_##NAME(p + i * SIZE));                             \
            } else {                                                                           \
                for (; i + 16 <= count; i += 16) {                                             \
                    vfw x;                                                                     \
                    for (int j = 0; j < 16; j++)                                               \
                        x[j] = get1_##NAME(p + (i + j) * stride);                              \
                    if (masked)                                                                \
                        NARROW_STEP_MASKED(x);                                                 \
                    else                                                                       \
                        NARROW_STEP_FAST(x);                                                   \
                }                                                                              \
            }                                                                                  \
            L->lo = lo, L->hi = hi, L->z = z, L->nan = nn, L->pinf = pi, L->ninf = mi;          \
            L->s1[0] = a0, L->s1[1] = a1, L->s2[0] = q0, L->s2[1] = q1;                         \
        }                                                                                      \
        for (; i < count; i++)                                                                 \
            narrow_lane(L, (int)((offset + i) & 15), get1_##NAME(p + i * stride), sc, c, masked); \
    }

#define NARROW_BLOCKS(NAME)                                                                     \
    CLONES static void NAME##_blocks(Job *job) {                                               \
        Py_ssize_t inner = job->shape[job->ndim - 1], stride = job->stride[job->ndim - 1];      \
        double sc = job->scale, c = job->centre;                                               \
        int masked = sc != 1.0; /* scaled values (huge ones) always take the masked kernel */ \
        for (Py_ssize_t b = job->first; b < job->last; b++) {                                  \
            Py_ssize_t start = b * BLOCK, stop = start + BLOCK < job->n ? start + BLOCK : job->n; \
            for (int attempt = 0; attempt < 2; attempt++) {                                    \
                NarrowLanes L;                                                                 \
                narrow_lanes_init(&L);                                                         \
                for (Py_ssize_t i_ = start; i_ < stop;) {                                      \
                    Py_ssize_t col = i_ % inner, len = inner - col;                            \
                    if (len > stop - i_)                                                       \
                        len = stop - i_;                                                       \
                    NAME##_segment(&L, address_of(job, i_), len, stride, i_ - start, sc, c, masked); \
                    i_ += len;                                                                 \
                }                                                                              \
                Part *part = &job->parts[b];                                                   \
                narrow_lanes_close(&L, part, job->kind);                                       \
                if (masked) { /* stay masked while blocks have NaN or inf */                   \
                    masked = sc != 1.0 || part->nan + part->pinf + part->ninf > 0;             \
                    break;                                                                     \
                }                                                                              \
                if (isfinite(part->s1) && isfinite(part->s2) && !isinf(part->lo) && !isinf(part->hi)) \
                    break;                                                                     \
                masked = 1; /* NaN, inf or an overflow: the block again, masked */            \
            }                                                                                  \
            block_samples(job, start, stop);                                                   \
        }                                                                                      \
    }

NARROW_SEGMENT(f32, 4)
NARROW_SEGMENT(bf16_strided, 2) /* its contiguous runs go through bf16_segment below */
NARROW_SEGMENT(f16_strided, 2) /* its contiguous runs go through f16_segment below */

/* float16 and bfloat16, contiguous, no NaN or inf expected: the bounds and the zero count on the
 * 16-bit patterns themselves (32 lanes of order keys: a third of the float32 work), the sums
 * from the float32 values X (bfloat16: computed here; float16: converted beforehand). */
#define HALF_STEP_FAST(H, X0, X1)                                                               \
    do {                                                                                       \
        vk h_ = (H);                                                                           \
        vk key_ = h_ ^ ((h_ >> 15) & 0x7fff); /* as half_key, on 32 lanes */                  \
        vk lt_ = key_ < klo;                                                                   \
        klo = (key_ & lt_) | (klo & ~lt_);                                                     \
        vk gt_ = key_ > khi;                                                                   \
        khi = (key_ & gt_) | (khi & ~gt_);                                                     \
        kz -= (vk)(((vku)h_ << 1) == 0);                                                       \
        vfw x0_ = (X0), x1_ = (X1);                                                            \
        vd a_ = __builtin_convertvector(low_half(x0_), vd) - vc;                               \
        vd b_ = __builtin_convertvector(high_half(x0_), vd) - vc;                              \
        a0 += a_;                                                                              \
        q0 += a_ * a_;                                                                         \
        a1 += b_;                                                                              \
        q1 += b_ * b_;                                                                         \
        a_ = __builtin_convertvector(low_half(x1_), vd) - vc;                                  \
        b_ = __builtin_convertvector(high_half(x1_), vd) - vc;                                 \
        a0 += a_;                                                                              \
        q0 += a_ * a_;                                                                         \
        a1 += b_;                                                                              \
        q1 += b_ * b_;                                                                         \
    } while (0)

/* count elements (a multiple of 32) of 16-bit patterns at p, starting on a 16-lane boundary,
 * whose float32 values are floats[0..count). */
INLINE void half_fast_run(NarrowLanes *L, const char *p, const float *floats, Py_ssize_t count, double c) {
    const vd vc = {c, c, c, c, c, c, c, c};
    vk klo = L->klo, khi = L->khi, kz = L->kz;
    vd a0 = L->s1[0], a1 = L->s1[1], q0 = L->s2[0], q1 = L->s2[1];
    for (Py_ssize_t i = 0; i + 32 <= count; i += 32) {
        vk h;
        memcpy(&h, p + 2 * i, sizeof h);
        HALF_STEP_FAST(h, load16_f32((const char *)(floats + i)), load16_f32((const char *)(floats + i + 16)));
    }
    L->klo = klo, L->khi = khi, L->kz = kz;
    L->s1[0] = a0, L->s1[1] = a1, L->s2[0] = q0, L->s2[1] = q1;
}

/* A contiguous float16/bfloat16 segment: the lane prologue and the tail as float32 lanes, the
 * middle through half_fast_run (fast mode) or the float32 kernel (masked mode). */
INLINE void half_segment(NarrowLanes *L, const char *p, const float *floats, Py_ssize_t count, Py_ssize_t offset,
                         double sc, double c, int masked) {
    Py_ssize_t i = 0;
    for (; i < count && ((offset + i) & 15); i++)
        narrow_lane(L, (int)((offset + i) & 15), floats[i], sc, c, masked);
    if (!masked) {
        Py_ssize_t run = (count - i) / 32 * 32;
        half_fast_run(L, p + 2 * i, floats + i, run, c);
        i += run;
    }
    f32_segment(L, (const char *)(floats + i), count - i, 4, offset + i, sc, c, masked);
}

/* float16 and bfloat16: contiguous runs are converted to float32 a chunk at a time (into a
 * buffer in the L1 cache; float16 with F16C's vcvtph2ps where the processor has it), then
 * summed like float32, with the bounds and zeros taken on the 16-bit patterns. */
#define HALF_CHUNK 1024

static void halves_portable(const char *src, float *dst, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++)
        dst[i] = get1_f16(src + 2 * i);
}

#if defined(HAVE_FLOAT16) && defined(__linux__) && !defined(__clang__)
#include <immintrin.h>
__attribute__((target("avx,f16c"))) static void halves_f16c(const char *src, float *dst, Py_ssize_t n) {
    Py_ssize_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + 2 * i))));
    for (; i < n; i++)
        dst[i] = get1_f16(src + 2 * i);
}
#define HALVES(SRC, DST, N) (use_f16c ? halves_f16c((SRC), (DST), (N)) : halves_portable((SRC), (DST), (N)))
#else
#define HALVES(SRC, DST, N) halves_portable((SRC), (DST), (N))
#endif

INLINE void bf16_to_floats(const char *src, float *dst, Py_ssize_t n) {
    Py_ssize_t i = 0;
    for (; i + 16 <= n; i += 16) {
        vu16w h;
        memcpy(&h, src + 2 * i, sizeof h);
        vu32w w = __builtin_convertvector(h, vu32w) << 16;
        memcpy(dst + i, &w, sizeof w);
    }
    for (; i < n; i++)
        dst[i] = get1_bf16(src + 2 * i);
}

#define HALF_KIND_SEGMENT(NAME, CONVERT)                                                        \
    INLINE void NAME##_segment(NarrowLanes *L, const char *p, Py_ssize_t count, Py_ssize_t stride, \
                               Py_ssize_t offset, double sc, double c, int masked) {           \
        if (stride != 2) {                                                                     \
            NAME##_strided_segment(L, p, count, stride, offset, sc, c, masked);                \
            return;                                                                            \
        }                                                                                      \
        float buf[HALF_CHUNK] __attribute__((aligned(64)));                                    \
        for (Py_ssize_t i = 0; i < count; i += HALF_CHUNK) {                                   \
            Py_ssize_t m = count - i < HALF_CHUNK ? count - i : HALF_CHUNK;                     \
            CONVERT(p + 2 * i, buf, m);                                                        \
            half_segment(L, p + 2 * i, buf, m, offset + i, sc, c, masked);                     \
        }                                                                                      \
    }

HALF_KIND_SEGMENT(f16, HALVES)
HALF_KIND_SEGMENT(bf16, bf16_to_floats)

NARROW_BLOCKS(f32)
NARROW_BLOCKS(bf16)
NARROW_BLOCKS(f16)

#endif /* FUSED_NARROW_H */
