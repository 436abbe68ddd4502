/* One fused pass over a dense float32/float64 buffer: min, max, the sums of (x - pivot) and
 * (x - pivot)**2 accumulated in float64, and the count of zeros.
 *
 * This is the CPU fast path of tensormagic.engine.tensorinfo.statistics: the pure torch/NumPy path needs five or
 * six passes (each cache-sized chunk copied to float64, centred, summed, squared, searched for
 * zeros); here every element is read once, on several threads, so the whole thing runs at memory
 * speed.  The extension is optional: when it is not built, statistics/cpu.py takes the pure path.
 *
 * NaN and inf are not special-cased: a NaN makes the sums NaN and an inf makes a bound infinite,
 * and the caller then falls back to its masked pass.  Nothing is allocated but the threads.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#define MAX_THREADS 64

typedef struct {
    const void *data;
    Py_ssize_t start, stop;
    int is_double;
    double pivot;
    double lo, hi, s1, s2;
    int64_t zeros;
} Part;

/* GCC vector types: eight lanes, two independent accumulators each, so the loop is vectorised
 * without reassociating any floating-point sum (no -ffast-math).  The clones pick AVX-512, AVX2
 * or the baseline at load time, by what the processor has. */
typedef double vd __attribute__((vector_size(64)));
typedef long long vl __attribute__((vector_size(64)));
typedef float vf __attribute__((vector_size(32)));

#define STEP(V, LO, HI, S1, S2, Z)                                  \
    do {                                                            \
        vd d_ = (V) - c;                                            \
        vl lt_ = (V) < LO;                                          \
        LO = (vd)(((vl)(V) & lt_) | ((vl)LO & ~lt_));               \
        vl gt_ = (V) > HI;                                          \
        HI = (vd)(((vl)(V) & gt_) | ((vl)HI & ~gt_));               \
        S1 += d_;                                                   \
        S2 += d_ * d_;                                              \
        Z -= ((V) == zero); /* a true lane is -1 */                 \
    } while (0)

#if defined(__x86_64__) && defined(__linux__) && !defined(__clang__)
#define CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CLONES /* elsewhere: the compiler's baseline vector width */
#endif

#define FUSED_KERNEL(NAME, T, LOAD)                                                            \
    CLONES static void NAME(Part *p) {                                                         \
        const T *x = (const T *)p->data;                                                       \
        const vd c = {p->pivot, p->pivot, p->pivot, p->pivot, p->pivot, p->pivot, p->pivot, p->pivot}; \
        const vd zero = {0, 0, 0, 0, 0, 0, 0, 0};                                              \
        const double inf = __builtin_inf();                                                    \
        vd lo0 = {inf, inf, inf, inf, inf, inf, inf, inf}, lo1 = lo0;                          \
        vd hi0 = -lo0, hi1 = -lo0;                                                             \
        vd a0 = zero, a1 = zero, q0 = zero, q1 = zero;                                         \
        vl z0 = {0, 0, 0, 0, 0, 0, 0, 0}, z1 = z0;                                             \
        Py_ssize_t i = p->start;                                                               \
        for (; i + 16 <= p->stop; i += 16) {                                                   \
            vd v0 = LOAD(x + i), v1 = LOAD(x + i + 8);                                         \
            STEP(v0, lo0, hi0, a0, q0, z0);                                                    \
            STEP(v1, lo1, hi1, a1, q1, z1);                                                    \
        }                                                                                      \
        double lo = inf, hi = -inf, s1 = 0.0, s2 = 0.0;                                        \
        int64_t zeros = 0;                                                                     \
        for (int j = 0; j < 8; j++) {                                                          \
            lo = lo0[j] < lo ? lo0[j] : lo;                                                    \
            lo = lo1[j] < lo ? lo1[j] : lo;                                                    \
            hi = hi0[j] > hi ? hi0[j] : hi;                                                    \
            hi = hi1[j] > hi ? hi1[j] : hi;                                                    \
            s1 += a0[j] + a1[j];                                                               \
            s2 += q0[j] + q1[j];                                                               \
            zeros += z0[j] + z1[j];                                                            \
        }                                                                                      \
        for (; i < p->stop; i++) {                                                             \
            double v = (double)x[i], d = v - p->pivot;                                         \
            lo = v < lo ? v : lo;                                                              \
            hi = v > hi ? v : hi;                                                              \
            s1 += d;                                                                           \
            s2 += d * d;                                                                       \
            zeros += (v == 0.0);                                                               \
        }                                                                                      \
        p->lo = lo;                                                                            \
        p->hi = hi;                                                                            \
        p->s1 = s1;                                                                            \
        p->s2 = s2;                                                                            \
        p->zeros = zeros;                                                                      \
    }

static inline __attribute__((always_inline)) vd load_float(const float *x) {
    vf f;
    memcpy(&f, x, sizeof f);
    return __builtin_convertvector(f, vd);
}

static inline __attribute__((always_inline)) vd load_double(const double *x) {
    vd v;
    memcpy(&v, x, sizeof v);
    return v;
}

FUSED_KERNEL(fused_float, float, load_float)
FUSED_KERNEL(fused_double, double, load_double)

static void *run_part(void *arg) {
    Part *p = (Part *)arg;
    if (p->is_double)
        fused_double(p);
    else
        fused_float(p);
    return NULL;
}

PyDoc_STRVAR(moments_doc,
             "moments(buffer, pivot, threads) -> (min, max, sum_centred, sum_squares_centred, zeros)\n\n"
             "One pass over a C-contiguous float32 ('f') or float64 ('d') buffer on up to `threads`\n"
             "threads; sums are of (x - pivot) and (x - pivot)**2 in float64.");

static PyObject *moments(PyObject *self, PyObject *args) {
    PyObject *obj;
    Py_buffer view;
    double pivot;
    int threads;
    if (!PyArg_ParseTuple(args, "Odi", &obj, &pivot, &threads))
        return NULL;
    if (PyObject_GetBuffer(obj, &view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) != 0)
        return NULL; /* not a buffer, or not C-contiguous: the exception says which */
    const char *fmt = view.format ? view.format : "B";
    if (fmt[0] == '@' || fmt[0] == '=' || fmt[0] == '<')
        fmt++;
    int is_double;
    if (strcmp(fmt, "d") == 0 && view.itemsize == 8)
        is_double = 1;
    else if (strcmp(fmt, "f") == 0 && view.itemsize == 4)
        is_double = 0;
    else {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_TypeError, "moments() takes a float32 or float64 buffer");
        return NULL;
    }
    Py_ssize_t n = view.len / view.itemsize;
    if (threads < 1)
        threads = 1;
    if (threads > MAX_THREADS)
        threads = MAX_THREADS;
    if (threads > n / 65536 + 1)
        threads = (int)(n / 65536 + 1); /* a thread per 64K elements at most: starting one costs */
    Part parts[MAX_THREADS];
    pthread_t ids[MAX_THREADS];
    int started[MAX_THREADS];
    for (int t = 0; t < threads; t++) {
        Py_ssize_t lo = n * t / threads, hi = n * (t + 1) / threads;
        /* Part boundaries on 64-byte lines, so that no two threads share a cache line. */
        lo -= lo % 16;
        hi = (t == threads - 1) ? n : hi - hi % 16;
        parts[t] = (Part){view.buf, lo, hi, is_double, pivot, 0.0, 0.0, 0.0, 0.0, 0};
        started[t] = 0;
    }
    Py_BEGIN_ALLOW_THREADS;
    for (int t = 1; t < threads; t++)
        started[t] = pthread_create(&ids[t], NULL, run_part, &parts[t]) == 0;
    run_part(&parts[0]);
    for (int t = 1; t < threads; t++) {
        if (started[t])
            pthread_join(ids[t], NULL);
        else
            run_part(&parts[t]); /* no thread to be had: do its part here */
    }
    Py_END_ALLOW_THREADS;
    PyBuffer_Release(&view);
    double lo = parts[0].lo, hi = parts[0].hi, s1 = 0.0, s2 = 0.0;
    long long zeros = 0;
    for (int t = 0; t < threads; t++) {
        lo = parts[t].lo < lo ? parts[t].lo : lo;
        hi = parts[t].hi > hi ? parts[t].hi : hi;
        s1 += parts[t].s1;
        s2 += parts[t].s2;
        zeros += parts[t].zeros;
    }
    return Py_BuildValue("ddddL", lo, hi, s1, s2, zeros);
}

static PyMethodDef methods[] = {
    {"moments", moments, METH_VARARGS, moments_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fused", "One fused statistics pass over float buffers (optional C helper).", -1, methods,
};

PyMODINIT_FUNC PyInit__fused(void) { return PyModule_Create(&module); }
