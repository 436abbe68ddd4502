/* The C pass (see _fused.c): the integer and bool kernels. */
#ifndef FUSED_INT_H
#define FUSED_INT_H

#include "fused_common.h"

/* ---- integer kinds: exact bounds as integers, float64 sums -------------------------------- */

typedef struct {
    vl lo[2], hi[2], z[2];
    vd s1[2], s2[2];
} IntLanes;

/* Signed or unsigned order: unsigned values are compared after flipping their sign bit. */
#define INT_STEP(V, LO, HI, A, Q, Z, TO_DOUBLE)                                                 \
    do {                                                                                       \
        vl v_ = (V);                                                                           \
        vl o_ = v_ ^ vflip;                                                                    \
        vl lt_ = o_ < LO;                                                                      \
        LO = (o_ & lt_) | (LO & ~lt_);                                                         \
        vl gt_ = o_ > HI;                                                                      \
        HI = (o_ & gt_) | (HI & ~gt_);                                                         \
        vd d_ = TO_DOUBLE(v_) - vc;                                                            \
        A += d_;                                                                               \
        Q += d_ * d_;                                                                          \
        Z -= (v_ == vzero);                                                                    \
    } while (0)

#define SIGNED_DOUBLE(V) __builtin_convertvector((V), vd)
#define UNSIGNED_DOUBLE(V) __builtin_convertvector((vu)(V), vd)

INLINE void int_lane(IntLanes *L, int lane, long long v, long long flip, int is_unsigned, double c) {
    int k = lane >> 3, j = lane & 7;
    long long o = v ^ flip;
    if (o < L->lo[k][j])
        L->lo[k][j] = o;
    if (o > L->hi[k][j])
        L->hi[k][j] = o;
    double d = (is_unsigned ? (double)(unsigned long long)v : (double)v) - c;
    L->s1[k][j] += d;
    L->s2[k][j] += d * d;
    L->z[k][j] += (v == 0);
}

static void int_lanes_init(IntLanes *L) {
    for (int k = 0; k < 2; k++) {
        for (int j = 0; j < 8; j++) {
            L->lo[k][j] = LLONG_MAX;
            L->hi[k][j] = LLONG_MIN;
            L->z[k][j] = 0;
            L->s1[k][j] = L->s2[k][j] = 0.0;
        }
    }
}

static void int_lanes_close(const IntLanes *L, Part *out) {
    long long lo = LLONG_MAX, hi = LLONG_MIN, z = 0;
    double s1 = 0.0, s2 = 0.0;
    for (int lane = 0; lane < 16; lane++) {
        int k = lane >> 3, j = lane & 7;
        lo = L->lo[k][j] < lo ? L->lo[k][j] : lo;
        hi = L->hi[k][j] > hi ? L->hi[k][j] : hi;
        s1 += L->s1[k][j];
        s2 += L->s2[k][j];
        z += L->z[k][j];
    }
    *out = (Part){0.0, 0.0, s1, s2, lo, hi, z, 0, 0, 0};
}

#define INT_KERNEL(NAME, SIZE, FLIP, TO_DOUBLE, IS_UNSIGNED)                                    \
    INLINE void NAME##_segment(IntLanes *L, const char *p, Py_ssize_t count, Py_ssize_t stride, \
                               Py_ssize_t offset, double c) {                                  \
        const long long flip = (FLIP);                                                         \
        const vl vflip = {flip, flip, flip, flip, flip, flip, flip, flip};                     \
        const vl vzero = {0, 0, 0, 0, 0, 0, 0, 0};                                             \
        const vd vc = {c, c, c, c, c, c, c, c};                                                 \
        Py_ssize_t i = 0;                                                                      \
        for (; i < count && ((offset + i) & 15); i++)                                          \
            int_lane(L, (int)((offset + i) & 15), get_##NAME(p + i * stride), flip, IS_UNSIGNED, c); \
        if (i + 16 <= count) {                                                                 \
            vl lo0 = L->lo[0], lo1 = L->lo[1], hi0 = L->hi[0], hi1 = L->hi[1];                  \
            vl z0 = L->z[0], z1 = L->z[1];                                                     \
            vd a0 = L->s1[0], a1 = L->s1[1], q0 = L->s2[0], q1 = L->s2[1];                      \
            if (stride == SIZE) {                                                              \
                for (; i + 16 <= count; i += 16) {                                             \
                    INT_STEP(load_##NAME(p + i * SIZE), lo0, hi0, a0, q0, z0, TO_DOUBLE);      \
                    INT_STEP(load_##NAME(p + (i + 8) * SIZE), lo1, hi1, a1, q1, z1, TO_DOUBLE); \
                }                                                                              \
            } else {                                                                           \
                for (; i + 16 <= count; i += 16) {                                             \
                    vl v0, v1;                                                                 \
                    for (int j = 0; j < 8; j++) {                                              \
                        v0[j] = get_##NAME(p + (i + j) * stride);                              \
                        v1[j] = get_##NAME(p + (i + 8 + j) * stride);                          \
                    }                                                                          \
                    INT_STEP(v0, lo0, hi0, a0, q0, z0, TO_DOUBLE);                             \
                    INT_STEP(v1, lo1, hi1, a1, q1, z1, TO_DOUBLE);                             \
                }                                                                              \
            }                                                                                  \
            L->lo[0] = lo0, L->lo[1] = lo1, L->hi[0] = hi0, L->hi[1] = hi1;                     \
            L->z[0] = z0, L->z[1] = z1;                                                        \
            L->s1[0] = a0, L->s1[1] = a1, L->s2[0] = q0, L->s2[1] = q1;                         \
        }                                                                                      \
        for (; i < count; i++)                                                                 \
            int_lane(L, (int)((offset + i) & 15), get_##NAME(p + i * stride), flip, IS_UNSIGNED, c); \
    }                                                                                          \
    CLONES static void NAME##_blocks(Job *job) {                                               \
        Py_ssize_t inner = job->shape[job->ndim - 1], stride = job->stride[job->ndim - 1];      \
        double c = job->centre;                                                                \
        for (Py_ssize_t b = job->first; b < job->last; b++) {                                  \
            Py_ssize_t start = b * BLOCK, stop = start + BLOCK < job->n ? start + BLOCK : job->n; \
            IntLanes L;                                                                        \
            int_lanes_init(&L);                                                                \
            for (Py_ssize_t i_ = start; i_ < stop;) {                                          \
                Py_ssize_t col = i_ % inner, len = inner - col;                                \
                if (len > stop - i_)                                                           \
                    len = stop - i_;                                                           \
                NAME##_segment(&L, address_of(job, i_), len, stride, i_ - start, c);           \
                i_ += len;                                                                     \
            }                                                                                  \
            int_lanes_close(&L, &job->parts[b]);                                               \
            block_samples(job, start, stop);                                                   \
        }                                                                                      \
    }

#define U64_FLIP ((long long)0x8000000000000000ULL)

INT_KERNEL(i8, 1, 0, SIGNED_DOUBLE, 0)
INT_KERNEL(i16, 2, 0, SIGNED_DOUBLE, 0)
INT_KERNEL(i32, 4, 0, SIGNED_DOUBLE, 0)
INT_KERNEL(i64, 8, 0, SIGNED_DOUBLE, 0)
INT_KERNEL(u8, 1, 0, SIGNED_DOUBLE, 0)   /* widened to int64: already in signed order */
INT_KERNEL(u16, 2, 0, SIGNED_DOUBLE, 0)
INT_KERNEL(u32, 4, 0, SIGNED_DOUBLE, 0)
INT_KERNEL(u64, 8, U64_FLIP, UNSIGNED_DOUBLE, 1)

/* ---- bool: the number of True values (nonzero bytes), eight at a time ---------------------- */

INLINE long long nonzero_bytes(uint64_t w) {
    w |= w >> 4;
    w |= w >> 2;
    w |= w >> 1;
    return __builtin_popcountll(w & 0x0101010101010101ULL);
}

INLINE void bool_segment(long long *ones, const char *p, Py_ssize_t count, Py_ssize_t stride) {
    Py_ssize_t i = 0;
    if (stride == 1) {
        for (; i + 8 <= count; i += 8) {
            uint64_t w;
            memcpy(&w, p + i, 8);
            *ones += nonzero_bytes(w);
        }
    }
    for (; i < count; i++)
        *ones += p[i * stride] != 0;
}

CLONES static void bool_blocks(Job *job) {
    Py_ssize_t inner = job->shape[job->ndim - 1], stride = job->stride[job->ndim - 1];
    for (Py_ssize_t b = job->first; b < job->last; b++) {
        Py_ssize_t start = b * BLOCK, stop = start + BLOCK < job->n ? start + BLOCK : job->n;
        long long ones = 0;
        for (Py_ssize_t i = start; i < stop;) {
            Py_ssize_t col = i % inner, len = inner - col;
            if (len > stop - i)
                len = stop - i;
            bool_segment(&ones, address_of(job, i), len, stride);
            i += len;
        }
        job->parts[b] = (Part){0.0, 0.0, 0.0, 0.0, 0, 0, stop - start - ones, 0, 0, 0};
        block_samples(job, start, stop);
    }
}

#endif /* FUSED_INT_H */
