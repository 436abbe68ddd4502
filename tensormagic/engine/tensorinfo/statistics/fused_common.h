/* The C pass (see _fused.c): kinds, jobs, vector types, element conversions, walking, sampling. */
#ifndef FUSED_COMMON_H
#define FUSED_COMMON_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#pragma GCC optimize("fp-contract=off")

#define MAX_THREADS 64
#define MAX_DIMS 16
#define BLOCK 65536
#define PIVOT_SAMPLE 4096
#define PIVOT_SCALE 0x1p-12

enum { K_F32, K_F64, K_F16, K_BF16, K_I8, K_I16, K_I32, K_I64, K_U8, K_U16, K_U32, K_U64, K_BOOL };
static const char *KIND_NAMES[] = {"float32", "float64", "float16", "bfloat16", "int8", "int16", "int32",
                                   "int64", "uint8", "uint16", "uint32", "uint64", "bool"};
static const int KIND_SIZES[] = {4, 8, 2, 2, 1, 2, 4, 8, 1, 2, 4, 8, 1};
#define N_KINDS 13

typedef struct {
    double lo, hi, s1, s2;
    long long ilo, ihi; /* integer kinds: exact bounds (uint64 kept as its bits) */
    long long zeros, nan, pinf, ninf;
} Part;

#define MAX_GRIDS 4

typedef struct {
    char *out;                        /* where the grid goes (raw elements) */
    Py_ssize_t planes, h, w, ky, kx;  /* every ky-th row, kx-th column of the first planes (h, w) planes */
} Grid;

typedef struct {
    const char *base;
    int kind, ndim;
    Py_ssize_t shape[MAX_DIMS], stride[MAX_DIMS]; /* bytes; the last dimension is the inner loop */
    Py_ssize_t n;
    double scale, centre;
    Part *parts;
    Py_ssize_t first, last; /* this thread's blocks */
    char *sample;            /* optional: where the random sample goes (raw elements) */
    Py_ssize_t sample_count;
    int grids;               /* optional: pictures' grids (see block_grid) */
    Grid grid[MAX_GRIDS];
} Job;

/* GCC vector types: eight lanes of 64 bits, two vectors per step (16 lanes). */
typedef double vd __attribute__((vector_size(64)));
typedef long long vl __attribute__((vector_size(64)));
typedef unsigned long long vu __attribute__((vector_size(64)));
typedef float vf __attribute__((vector_size(32)));
typedef int vi32 __attribute__((vector_size(32)));
typedef unsigned int vu32 __attribute__((vector_size(32)));
typedef short vi16 __attribute__((vector_size(16)));
typedef unsigned short vu16 __attribute__((vector_size(16)));
typedef signed char vi8 __attribute__((vector_size(8)));
typedef unsigned char vu8 __attribute__((vector_size(8)));

/* One clone per x86-64 level, picked at load time; -DTENSORMAGIC_ONE_TARGET builds for the
 * compiler's own target only (how the tests check that AVX2 and baseline builds give the same
 * numbers as AVX-512 ones, on one machine). */
#if defined(__x86_64__) && defined(__linux__) && !defined(__clang__) && !defined(TENSORMAGIC_ONE_TARGET)
#define CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define CLONES /* elsewhere: the compiler's baseline vector width */
#endif
#define INLINE static inline __attribute__((always_inline))

/* ---- element conversions (scalar and 8 contiguous elements) ------------------------------ */

INLINE float half_to_float(uint16_t h) {
    uint32_t em = h & 0x7fffu, bits = em << 13;
    float f;
    if (em >= 0x7c00u) {
        bits |= 0x7f800000u; /* inf and NaN */
        memcpy(&f, &bits, 4);
    } else {
        memcpy(&f, &bits, 4);
        f *= 0x1p112f; /* exact, subnormals included */
    }
    return (h & 0x8000u) ? -f : f;
}


INLINE float bf16_to_float(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

INLINE double get_f32(const char *p) { float v; memcpy(&v, p, 4); return v; }
INLINE double get_f64(const char *p) { double v; memcpy(&v, p, 8); return v; }
INLINE double get_f16(const char *p) { uint16_t v; memcpy(&v, p, 2); return half_to_float(v); }
INLINE double get_bf16(const char *p) { uint16_t v; memcpy(&v, p, 2); return bf16_to_float(v); }

INLINE vd load_f64(const char *p) { vd v; memcpy(&v, p, sizeof v); return v; }

#define INT_GETTERS(NAME, T, VT)                                                                 \
    INLINE long long get_##NAME(const char *p) { T v; memcpy(&v, p, sizeof v); return (long long)v; } \
    INLINE vl load_##NAME(const char *p) { VT v; memcpy(&v, p, sizeof v); return __builtin_convertvector(v, vl); }
INT_GETTERS(i8, int8_t, vi8)
INT_GETTERS(i16, int16_t, vi16)
INT_GETTERS(i32, int32_t, vi32)
INT_GETTERS(u8, uint8_t, vu8)
INT_GETTERS(u16, uint16_t, vu16)
INT_GETTERS(u32, uint32_t, vu32)
INLINE long long get_i64(const char *p) { long long v; memcpy(&v, p, 8); return v; }
INLINE vl load_i64(const char *p) { vl v; memcpy(&v, p, sizeof v); return v; }
INLINE long long get_u64(const char *p) { long long v; memcpy(&v, p, 8); return v; }
INLINE vl load_u64(const char *p) { vl v; memcpy(&v, p, sizeof v); return v; }

/* ---- walking a block: rows of the inner dimension ----------------------------------------- */

/* The address of logical element i (row-major over shape, strides in bytes). */
static const char *element_at(const char *base, int ndim, const Py_ssize_t *shape, const Py_ssize_t *stride, Py_ssize_t i) {
    const char *p = base;
    for (int d = ndim - 1; d >= 0; d--) {
        p += (i % shape[d]) * stride[d];
        i /= shape[d];
    }
    return p;
}

static const char *address_of(const Job *job, Py_ssize_t i) {
    return element_at(job->base, job->ndim, job->shape, job->stride, i);
}

/* ---- threads -------------------------------------------------------------------------------- */

/* One part of a job: part t of count (the part's bounds derive from t and count alone, so the
 * result does not depend on how many threads there are). */
typedef void (*PartFn)(const void *arg, int t, int count);

#ifndef _OPENMP
typedef struct {
    PartFn fn;
    const void *arg;
    int t, count;
} PartCall;

static void *part_thread(void *call) {
    const PartCall *c = (const PartCall *)call;
    c->fn(c->arg, c->t, c->count);
    return NULL;
}
#endif

/* Run parts 0..threads-1 of a job.  Built with OpenMP (as setup.py does), the threads are those
 * of the OpenMP runtime already loaded, torch's own: its workers, which may still be spinning
 * after the user's last torch operation, take the work instead of competing with new threads
 * for the cores.  Without OpenMP: POSIX threads (a part whose thread cannot start runs here). */
static void run_parts(PartFn fn, const void *arg, int threads) {
    if (threads <= 1) {
        fn(arg, 0, 1);
        return;
    }
#ifdef _OPENMP
#pragma omp parallel num_threads(threads)
    fn(arg, omp_get_thread_num(), omp_get_num_threads());
#else
    PartCall calls[MAX_THREADS];
    pthread_t ids[MAX_THREADS];
    int started[MAX_THREADS];
    for (int t = 0; t < threads; t++) {
        calls[t] = (PartCall){fn, arg, t, threads};
        started[t] = 0;
    }
    for (int t = 1; t < threads; t++)
        started[t] = pthread_create(&ids[t], NULL, part_thread, &calls[t]) == 0;
    fn(arg, 0, threads);
    for (int t = 1; t < threads; t++) {
        if (started[t])
            pthread_join(ids[t], NULL);
        else
            fn(arg, t, threads);
    }
#endif
}

/* splitmix64: a fixed-seed stream of random numbers, one per sample index. */
INLINE uint64_t mix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* ---- a picture's grid ------------------------------------------------------------------------ */

/* Every ky-th row and kx-th column of the first g->planes (H, W) planes of the values, copied
 * raw into g->out as (planes, ceil(H / ky), ceil(W / kx)): the subsample a heatmap or image view
 * reads, taken while each block is in the cache instead of in a second trip to memory.  The
 * walk's order is the values' own row-major order (the caller passes grids only then), and a row
 * of W values lies within one run of the inner dimension (stats() checks that its length is a
 * multiple of W), so the columns of a row are kx strides apart. */
#define GRID_COPY(SIZE)                                                                          \
    for (Py_ssize_t e = 0; e < count; e++, p += step, out += SIZE)                               \
        memcpy(out, p, SIZE)

INLINE void grid_part(const Job *job, const Grid *g, Py_ssize_t start, Py_ssize_t stop) {
    const Py_ssize_t H = g->h, W = g->w, ky = g->ky, kx = g->kx;
    const Py_ssize_t gh = (H + ky - 1) / ky, gw = (W + kx - 1) / kx;
    const Py_ssize_t size = KIND_SIZES[job->kind], step = job->stride[job->ndim - 1] * kx;
    const Py_ssize_t end = g->planes * H * W;
    if (stop > end)
        stop = end;
    Py_ssize_t row = start / W; /* rows over all planes: plane * H + r */
    while (row * W < stop) {
        const Py_ssize_t plane = row / H, r = row % H;
        if (r % ky) { /* on to the next grid row: in this plane, or the next plane's first */
            const Py_ssize_t next = r + ky - r % ky;
            row = next < H ? plane * H + next : (plane + 1) * H;
            continue;
        }
        const Py_ssize_t base = row * W;
        Py_ssize_t c = start > base ? start - base : 0;
        c = (c + kx - 1) / kx * kx;
        const Py_ssize_t c1 = stop - base < W ? stop - base : W;
        if (c < c1) {
            const char *p = address_of(job, base + c);
            char *out = g->out + ((plane * gh + r / ky) * gw + c / kx) * size;
            const Py_ssize_t count = (c1 - c + kx - 1) / kx;
            switch (size) { /* a copy of a known size: inlined, not a call per element */
            case 1: GRID_COPY(1); break;
            case 2: GRID_COPY(2); break;
            case 4: GRID_COPY(4); break;
            default: GRID_COPY(8); break;
            }
        }
        row++;
    }
}

INLINE void block_grid(const Job *job, Py_ssize_t start, Py_ssize_t stop) {
    for (int k = 0; k < job->grids; k++)
        grid_part(job, &job->grid[k], start, stop);
}

/* ---- the histogram's sample ------------------------------------------------------------------ */

/* Sample i of k is the element at floor((i + u_i) * n / k), u_i uniform in [0, 1) from the fixed
 * seed: one random element of each of k equal strata (a stratified random sample, the same on
 * every machine).  Called after each block, while it is in the cache: the samples in it (and the
 * block's part of a picture's grid). */
INLINE void block_samples(const Job *job, Py_ssize_t start, Py_ssize_t stop) {
    block_grid(job, start, stop);
    if (!job->sample_count)
        return;
    const double per = (double)job->n / (double)job->sample_count; /* elements per stratum */
    const Py_ssize_t size = KIND_SIZES[job->kind];
    Py_ssize_t i = (Py_ssize_t)((double)start / per) - 1;
    for (i = i < 0 ? 0 : i; i < job->sample_count; i++) {
        double u = (double)(mix64((uint64_t)i) >> 11) * 0x1p-53;
        Py_ssize_t pos = (Py_ssize_t)(((double)i + u) * per);
        if (pos >= job->n)
            pos = job->n - 1;
        if (pos >= stop)
            break;
        if (pos >= start)
            memcpy(job->sample + i * size, address_of(job, pos), (size_t)size);
    }
}

#endif /* FUSED_COMMON_H */
