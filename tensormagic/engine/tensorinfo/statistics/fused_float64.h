/* The C pass (see _fused.c): the float64 kernel. */
#ifndef FUSED_FLOAT64_H
#define FUSED_FLOAT64_H

#include "fused_common.h"

/* ---- float kinds: a fast kernel, and a masked one for blocks with NaN or inf --------------- */

/* Per-lane state of a block: lanes 0-7 in the first vector, 8-15 in the second. */
typedef struct {
    vd lo[2], hi[2], s1[2], s2[2];
    vl z[2], nan[2], pinf[2], ninf[2];
} FloatLanes;

#define FLOAT_STEP_FAST(V, LO, HI, A, Q, Z)                                                     \
    do {                                                                                       \
        vd v_ = (V);                                                                           \
        vd d_ = v_ - vc; /* the fast kernel runs with scale 1 only */                          \
        vl lt_ = v_ < LO;                                                                      \
        LO = (vd)(((vl)v_ & lt_) | ((vl)LO & ~lt_));                                           \
        vl gt_ = v_ > HI;                                                                      \
        HI = (vd)(((vl)v_ & gt_) | ((vl)HI & ~gt_));                                           \
        A += d_;                                                                               \
        Q += d_ * d_;                                                                          \
        Z -= (v_ == vzero); /* a true lane is -1 */                                            \
    } while (0)

#define FLOAT_STEP_MASKED(V, LO, HI, A, Q, Z, NN, PI, MI)                                       \
    do {                                                                                       \
        vd v_ = (V);                                                                           \
        vl fin_ = (v_ - v_) == vzero; /* false for NaN and +-inf */                            \
        vd d_ = (vd)((vl)(v_ * vsc - vc) & fin_);                                              \
        vl lt_ = (v_ < LO) & fin_;                                                             \
        LO = (vd)(((vl)v_ & lt_) | ((vl)LO & ~lt_));                                           \
        vl gt_ = (v_ > HI) & fin_;                                                             \
        HI = (vd)(((vl)v_ & gt_) | ((vl)HI & ~gt_));                                           \
        A += d_;                                                                               \
        Q += d_ * d_;                                                                          \
        Z -= (v_ == vzero);                                                                    \
        NN -= (v_ != v_);                                                                      \
        PI -= (v_ == vinf);                                                                    \
        MI -= (v_ == -vinf);                                                                   \
    } while (0)

/* The 16 lanes of FloatLanes as local vectors (registers) around a vector loop, and back. */
#define FLOAT_LOCALS(L)                                                                         \
    vd lo0 = (L)->lo[0], lo1 = (L)->lo[1], hi0 = (L)->hi[0], hi1 = (L)->hi[1];                  \
    vd a0 = (L)->s1[0], a1 = (L)->s1[1], q0 = (L)->s2[0], q1 = (L)->s2[1];                      \
    vl z0 = (L)->z[0], z1 = (L)->z[1], n0 = (L)->nan[0], n1 = (L)->nan[1];                      \
    vl p0 = (L)->pinf[0], p1 = (L)->pinf[1], m0 = (L)->ninf[0], m1 = (L)->ninf[1]
#define FLOAT_STORE(L)                                                                          \
    do {                                                                                       \
        (L)->lo[0] = lo0, (L)->lo[1] = lo1, (L)->hi[0] = hi0, (L)->hi[1] = hi1;                 \
        (L)->s1[0] = a0, (L)->s1[1] = a1, (L)->s2[0] = q0, (L)->s2[1] = q1;                     \
        (L)->z[0] = z0, (L)->z[1] = z1, (L)->nan[0] = n0, (L)->nan[1] = n1;                     \
        (L)->pinf[0] = p0, (L)->pinf[1] = p1, (L)->ninf[0] = m0, (L)->ninf[1] = m1;             \
    } while (0)

/* One element on lane `lane` (0-15): the same operations as one lane of the vector steps. */
INLINE void float_lane(FloatLanes *L, int lane, double v, double sc, double c, int masked) {
    int k = lane >> 3, j = lane & 7;
    int fin = !masked || (v - v) == 0.0;
    double d = masked ? (fin ? v * sc - c : 0.0) : v - c;
    if (fin && v < L->lo[k][j])
        L->lo[k][j] = v;
    if (fin && v > L->hi[k][j])
        L->hi[k][j] = v;
    L->s1[k][j] += d;
    L->s2[k][j] += d * d;
    L->z[k][j] += (v == 0.0);
    if (masked) {
        L->nan[k][j] += (v != v);
        L->pinf[k][j] += (v == __builtin_inf());
        L->ninf[k][j] += (v == -__builtin_inf());
    }
}

static void float_lanes_init(FloatLanes *L) {
    const double inf = __builtin_inf();
    for (int k = 0; k < 2; k++) {
        for (int j = 0; j < 8; j++) {
            L->lo[k][j] = inf;
            L->hi[k][j] = -inf;
            L->s1[k][j] = L->s2[k][j] = 0.0;
            L->z[k][j] = L->nan[k][j] = L->pinf[k][j] = L->ninf[k][j] = 0;
        }
    }
}

static void float_lanes_close(const FloatLanes *L, Part *out) {
    const double inf = __builtin_inf();
    double lo = inf, hi = -inf, s1 = 0.0, s2 = 0.0;
    long long z = 0, nan = 0, pinf = 0, ninf = 0;
    for (int lane = 0; lane < 16; lane++) { /* a fixed order */
        int k = lane >> 3, j = lane & 7;
        lo = L->lo[k][j] < lo ? L->lo[k][j] : lo;
        hi = L->hi[k][j] > hi ? L->hi[k][j] : hi;
        s1 += L->s1[k][j];
        s2 += L->s2[k][j];
        z += L->z[k][j];
        nan += L->nan[k][j];
        pinf += L->pinf[k][j];
        ninf += L->ninf[k][j];
    }
    *out = (Part){lo, hi, s1, s2, 0, 0, z, nan, pinf, ninf};
}

#define FLOAT_KERNEL(NAME, SIZE)                                                                \
    INLINE void NAME##_segment(FloatLanes *L, const char *p, Py_ssize_t count, Py_ssize_t stride, \
                               Py_ssize_t offset, double sc, double c, int masked) {           \
        const vd vsc = {sc, sc, sc, sc, sc, sc, sc, sc}, vc = {c, c, c, c, c, c, c, c};         \
        const vd vzero = {0, 0, 0, 0, 0, 0, 0, 0};                                             \
        const double inf = __builtin_inf();                                                    \
        const vd vinf = {inf, inf, inf, inf, inf, inf, inf, inf};                               \
        Py_ssize_t i = 0;                                                                      \
        for (; i < count && ((offset + i) & 15); i++) /* up to the next 16-lane boundary */    \
            float_lane(L, (int)((offset + i) & 15), get_##NAME(p + i * stride), sc, c, masked); \
        if (i + 16 <= count) {                                                                 \
            FLOAT_LOCALS(L);                                                                   \
            if (stride == SIZE && masked) {                                                    \
                for (; i + 16 <= count; i += 16) {                                             \
                    FLOAT_STEP_MASKED(load_##NAME(p + i * SIZE), lo0, hi0, a0, q0, z0, n0, p0, m0); \
                    FLOAT_STEP_MASKED(load_##NAME(p + (i + 8) * SIZE), lo1, hi1, a1, q1, z1, n1, p1, m1); \
                }                                                                              \
            } else if (stride == SIZE) {                                                       \
                for (; i + 16 <= count; i += 16) {                                             \
                    FLOAT_STEP_FAST(load_##NAME(p + i * SIZE), lo0, hi0, a0, q0, z0);          \
                    FLOAT_STEP_FAST(load_##NAME(p + (i + 8) * SIZE), lo1, hi1, a1, q1, z1);    \
                }                                                                              \
            } else {                                                                           \
                for (; i + 16 <= count; i += 16) {                                             \
                    vd v0, v1;                                                                 \
                    for (int j = 0; j < 8; j++) {                                              \
                        v0[j] = get_##NAME(p + (i + j) * stride);                              \
                        v1[j] = get_##NAME(p + (i + 8 + j) * stride);                          \
                    }                                                                          \
                    if (masked) {                                                              \
                        FLOAT_STEP_MASKED(v0, lo0, hi0, a0, q0, z0, n0, p0, m0);               \
                        FLOAT_STEP_MASKED(v1, lo1, hi1, a1, q1, z1, n1, p1, m1);               \
                    } else {                                                                   \
                        FLOAT_STEP_FAST(v0, lo0, hi0, a0, q0, z0);                             \
                        FLOAT_STEP_FAST(v1, lo1, hi1, a1, q1, z1);                             \
                    }                                                                          \
                }                                                                              \
            }                                                                                  \
            FLOAT_STORE(L);                                                                    \
        }                                                                                      \
        for (; i < count; i++)                                                                 \
            float_lane(L, (int)((offset + i) & 15), get_##NAME(p + i * stride), sc, c, masked); \
    }                                                                                          \
    CLONES static void NAME##_blocks(Job *job) {                                               \
        Py_ssize_t inner = job->shape[job->ndim - 1], stride = job->stride[job->ndim - 1];      \
        double sc = job->scale, c = job->centre;                                               \
        int masked = sc != 1.0; /* the last block had NaN or inf (or values are scaled) */    \
        for (Py_ssize_t b = job->first; b < job->last; b++) {                                  \
            Py_ssize_t start = b * BLOCK, stop = start + BLOCK < job->n ? start + BLOCK : job->n; \
            for (int attempt = 0; attempt < 2; attempt++) {                                    \
                FloatLanes L;                                                                  \
                float_lanes_init(&L);                                                          \
                Py_ssize_t i_ = start;                                                         \
                while (i_ < stop) {                                                            \
                    Py_ssize_t col = i_ % inner, len = inner - col;                            \
                    if (len > stop - i_)                                                       \
                        len = stop - i_;                                                       \
                    NAME##_segment(&L, address_of(job, i_), len, stride, i_ - start, sc, c, masked); \
                    i_ += len;                                                                 \
                }                                                                              \
                Part *part = &job->parts[b];                                                   \
                float_lanes_close(&L, part);                                                   \
                int clean = isfinite(part->s1) && isfinite(part->s2) && !isinf(part->lo) && !isinf(part->hi); \
                if (masked) {                                                                  \
                    masked = sc != 1.0 || part->nan + part->pinf + part->ninf > 0;             \
                    break;                                                                     \
                }                                                                              \
                if (clean)                                                                     \
                    break;                                                                     \
                masked = 1; /* NaN, inf or an overflow: the block again, masked */            \
            }                                                                                  \
            block_samples(job, start, stop);                                                   \
        }                                                                                      \
    }

FLOAT_KERNEL(f64, 8)

#endif /* FUSED_FLOAT64_H */
