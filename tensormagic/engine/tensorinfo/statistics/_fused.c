/* One fused pass over a strided CPU buffer of any common dtype: the statistics of %tensorinfo.
 *
 * stats(address, kind, shape, strides, scale, threads[, sample_address, sample_count[, grids]])
 *     -> (lo, hi, s1, s2, zeros, nan, posinf, neginf, centre)
 *
 * Every element is read once, on up to `threads` threads: the min and max of the finite values
 * (exact: integers are compared as integers), the counts of zeros, NaN, +inf and -inf, and the
 * sums of d = x * scale - centre and of d * d over the finite values, accumulated in float64.
 * `centre` is the mean of an evenly spaced sample of at most PIVOT_SAMPLE finite values (times
 * `scale`): centring keeps the sum of squares accurate for data far from zero.  `scale` is a
 * power of two (1 unless the values are so large that their squares overflow).  Optionally it
 * also copies a fixed-seed stratified random sample of the elements (for the histogram), and
 * up to MAX_GRIDS grids (address, planes, h, w, ky, kx): every ky-th row and kx-th column of the
 * first planes (h, w) planes, in the values' own row-major order (for the pictures).
 *
 * Kinds: float32 float64 float16 bfloat16 int8 int16 int32 int64 uint8 uint16 uint32 uint64
 * bool.  `shape` and `strides` (in bytes, >= 0) describe the elements in the order they are
 * summed; the caller has merged what it could, so the last dimension is the inner loop.
 *
 * The result does not depend on the machine: elements are summed in fixed blocks of BLOCK
 * logical elements, each over 16 lanes fixed by the element's offset in its block (whatever
 * the vector width the compiler picked), the lanes of a block are added in a fixed order, and
 * the blocks in block order, whatever thread computed them.  No -ffast-math and no FMA
 * contraction (the pragma below): every lane does the same IEEE operations on every machine.
 *
 * This is the CPU fast path of tensormagic.engine.tensorinfo.statistics; the extension is
 * optional: when it is not built, statistics/cpu.py takes the pure torch path.  It allocates
 * one Part per block (96 bytes per 65536 elements), and runs on the OpenMP threads torch
 * already has (POSIX threads without OpenMP).
 *
 * Files: fused_common.h (kinds, vector types, conversions, walking a block, the histogram's
 * sample), fused_float64.h, fused_narrow.h (float32, float16, bfloat16), fused_int.h (integers,
 * bool), fused_histogram.h (the histogram's counts, a second function), and this one (the threads, the centring pivot and the Python binding).
 */
/* The kernels live in headers by kind; this file is the pass itself and its Python binding. */
#include "fused_common.h"
#include "fused_float64.h"
#include "fused_narrow.h"
#include "fused_int.h"
#include "fused_histogram.h"

/* ---- the pass ----------------------------------------------------------------------------- */

static void *run_job(void *arg) {
    Job *job = (Job *)arg;
    switch (job->kind) {
    case K_F32: f32_blocks(job); break;
    case K_F64: f64_blocks(job); break;
    case K_F16: f16_blocks(job); break;
    case K_BF16: bf16_blocks(job); break;
    case K_I8: i8_blocks(job); break;
    case K_I16: i16_blocks(job); break;
    case K_I32: i32_blocks(job); break;
    case K_I64: i64_blocks(job); break;
    case K_U8: u8_blocks(job); break;
    case K_U16: u16_blocks(job); break;
    case K_U32: u32_blocks(job); break;
    case K_U64: u64_blocks(job); break;
    default: bool_blocks(job); break;
    }
    return NULL;
}

/* Thread t of T takes blocks [blocks * t / T, blocks * (t + 1) / T): the result does not depend
 * on how many there are (see run_parts). */
typedef struct {
    const Job *job;
    Py_ssize_t blocks;
} Blocks;

static void blocks_part(const void *arg, int t, int count) {
    const Blocks *b = (const Blocks *)arg;
    Job mine = *b->job;
    mine.first = b->blocks * t / count;
    mine.last = b->blocks * (t + 1) / count;
    run_job(&mine);
}

static void run_parallel(const Job *job, Py_ssize_t blocks, int threads) {
    Blocks b = {job, blocks};
    run_parts(blocks_part, &b, threads);
}

static double value_as_double(const Job *job, const char *p) {
    switch (job->kind) {
    case K_F32: return get_f32(p);
    case K_F64: return get_f64(p);
    case K_F16: return get_f16(p);
    case K_BF16: return get_bf16(p);
    case K_I8: return (double)get_i8(p);
    case K_I16: return (double)get_i16(p);
    case K_I32: return (double)get_i32(p);
    case K_I64: return (double)get_i64(p);
    case K_U8: return (double)get_u8(p);
    case K_U16: return (double)get_u16(p);
    case K_U32: return (double)get_u32(p);
    case K_U64: return (double)(unsigned long long)get_u64(p);
    default: return *p != 0;
    }
}

/* The mean of the finite values (times scale) of an evenly spaced sample: every step-th logical
 * element, step = max(1, n / PIVOT_SAMPLE), at most PIVOT_SAMPLE of them; summed scaled by
 * PIVOT_SCALE (exact) so that it cannot overflow.  0 when the sample has no finite value. */
static double centre_of(const Job *job) {
    Py_ssize_t step = job->n / PIVOT_SAMPLE > 1 ? job->n / PIVOT_SAMPLE : 1;
    double sum = 0.0;
    long long count = 0;
    for (Py_ssize_t k = 0; k < PIVOT_SAMPLE && k * step < job->n; k++) {
        double v = value_as_double(job, address_of(job, k * step)) * job->scale;
        if ((v - v) == 0.0) {
            sum += v * PIVOT_SCALE;
            count++;
        }
    }
    return count ? sum / (double)count / PIVOT_SCALE : 0.0;
}

PyDoc_STRVAR(stats_doc,
             "stats(address, kind, shape, strides, scale, threads[, sample_address, sample_count])\n"
             "    -> (lo, hi, s1, s2, zeros, nan, posinf, neginf, centre)\n\n"
             "With sample_address, also writes sample_count elements, a fixed-seed stratified random\n"
             "sample, there (raw elements of `kind`; the caller provides the room).\n"
             "One pass over the elements at `address` (an int) of `kind` ('float32', 'int64', 'bool'...),\n"
             "laid out by `shape` and `strides` (bytes, >= 0), on up to `threads` threads.  lo and hi are\n"
             "the finite min and max (ints for integer kinds and bool), s1 and s2 the sums of d and d*d\n"
             "for d = x * scale - centre over the finite values.  The caller keeps the memory alive.");

/* The pictures' grids: a sequence of (address, planes, h, w, ky, kx), each checked to lie in the
 * values with its rows within runs of the inner dimension. */
static int parse_grids(Job *job, PyObject *grids_obj) {
    PyObject *grids = PySequence_Fast(grids_obj, "grids must be a sequence");
    if (!grids)
        return -1;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(grids);
    if (count > MAX_GRIDS) {
        Py_DECREF(grids);
        PyErr_SetString(PyExc_ValueError, "stats() takes at most 4 grids");
        return -1;
    }
    for (Py_ssize_t k = 0; k < count; k++) {
        Grid *g = &job->grid[k];
        PyObject *address;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(grids, k), "Onnnnn", &address, &g->planes, &g->h, &g->w, &g->ky, &g->kx)) {
            Py_DECREF(grids);
            return -1;
        }
        if (g->planes < 1 || g->h < 1 || g->w < 1 || g->ky < 1 || g->kx < 1 || g->planes > job->n / g->h / g->w || job->shape[job->ndim - 1] % g->w != 0) {
            Py_DECREF(grids);
            PyErr_SetString(PyExc_ValueError, "stats(): a grid must lie in the values, its rows within runs of the inner dimension");
            return -1;
        }
        g->out = (char *)PyLong_AsVoidPtr(address);
        if (PyErr_Occurred()) {
            Py_DECREF(grids);
            return -1;
        }
    }
    job->grids = (int)count;
    Py_DECREF(grids);
    return 0;
}

static PyObject *stats(PyObject *self, PyObject *args) {
    PyObject *address, *shape_obj, *strides_obj;
    const char *kind_name;
    double scale;
    int threads;
    PyObject *sample_address = NULL, *grids_obj = NULL;
    Py_ssize_t sample_count = 0;
    if (!PyArg_ParseTuple(args, "OsOOdi|OnO", &address, &kind_name, &shape_obj, &strides_obj, &scale, &threads, &sample_address, &sample_count, &grids_obj))
        return NULL;
    Job job;
    memset(&job, 0, sizeof job);
    job.kind = -1;
    for (int k = 0; k < N_KINDS; k++)
        if (strcmp(kind_name, KIND_NAMES[k]) == 0)
            job.kind = k;
    if (job.kind < 0) {
        PyErr_Format(PyExc_TypeError, "stats() has no kernel for %s", kind_name);
        return NULL;
    }
    job.base = (const char *)PyLong_AsVoidPtr(address);
    if (PyErr_Occurred())
        return NULL;
    PyObject *shape = PySequence_Fast(shape_obj, "shape must be a sequence");
    PyObject *strides = shape ? PySequence_Fast(strides_obj, "strides must be a sequence") : NULL;
    if (!strides) {
        Py_XDECREF(shape);
        return NULL;
    }
    Py_ssize_t ndim = PySequence_Fast_GET_SIZE(shape);
    if (ndim < 1 || ndim > MAX_DIMS || PySequence_Fast_GET_SIZE(strides) != ndim) {
        Py_DECREF(shape);
        Py_DECREF(strides);
        PyErr_SetString(PyExc_ValueError, "stats() takes 1 to 16 dimensions, as many strides as sizes");
        return NULL;
    }
    job.ndim = (int)ndim;
    job.n = 1;
    for (Py_ssize_t d = 0; d < ndim; d++) {
        job.shape[d] = PyLong_AsSsize_t(PySequence_Fast_GET_ITEM(shape, d));
        job.stride[d] = PyLong_AsSsize_t(PySequence_Fast_GET_ITEM(strides, d));
        if ((job.shape[d] < 1 || job.stride[d] < 0) && !PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "stats() takes sizes >= 1 and strides >= 0");
        job.n *= job.shape[d];
    }
    Py_DECREF(shape);
    Py_DECREF(strides);
    if (PyErr_Occurred())
        return NULL;
    job.scale = scale;
    if (sample_count > 0 && sample_address) {
        job.sample = (char *)PyLong_AsVoidPtr(sample_address);
        if (PyErr_Occurred())
            return NULL;
        job.sample_count = sample_count;
    }
    if (grids_obj && grids_obj != Py_None && parse_grids(&job, grids_obj) < 0)
        return NULL;
    Py_ssize_t blocks = (job.n + BLOCK - 1) / BLOCK;
    if (threads < 1)
        threads = 1;
    if (threads > MAX_THREADS)
        threads = MAX_THREADS;
    if (threads > blocks)
        threads = (int)blocks;
    Part *parts = (Part *)malloc((size_t)blocks * sizeof(Part));
    if (!parts)
        return PyErr_NoMemory();
    Py_BEGIN_ALLOW_THREADS;
    job.centre = centre_of(&job);
    job.parts = parts;
    run_parallel(&job, blocks, threads);
    Py_END_ALLOW_THREADS;
    /* The blocks in block order: the same sums whatever thread computed which block. */
    double lo = __builtin_inf(), hi = -__builtin_inf(), s1 = 0.0, s2 = 0.0;
    long long ilo = LLONG_MAX, ihi = LLONG_MIN, zeros = 0, nan = 0, pinf = 0, ninf = 0;
    for (Py_ssize_t b = 0; b < blocks; b++) {
        const Part *p = &parts[b];
        lo = p->lo < lo ? p->lo : lo;
        hi = p->hi > hi ? p->hi : hi;
        ilo = p->ilo < ilo ? p->ilo : ilo;
        ihi = p->ihi > ihi ? p->ihi : ihi;
        s1 += p->s1;
        s2 += p->s2;
        zeros += p->zeros;
        nan += p->nan;
        pinf += p->pinf;
        ninf += p->ninf;
    }
    free(parts);
    if (job.kind <= K_BF16)
        return Py_BuildValue("ddddLLLLd", lo, hi, s1, s2, zeros, nan, pinf, ninf, job.centre);
    if (job.kind == K_BOOL) /* min: False if any value is; max: True if any value is */
        return Py_BuildValue("NNddLLLLd", PyLong_FromLongLong(job.n - zeros < job.n ? 0 : 1),
                             PyLong_FromLongLong(job.n - zeros > 0 ? 1 : 0), 0.0, 0.0, zeros, 0LL, 0LL, 0LL, job.centre);
    PyObject *plo, *phi;
    if (job.kind == K_U64) {
        plo = PyLong_FromUnsignedLongLong((unsigned long long)(ilo ^ U64_FLIP));
        phi = PyLong_FromUnsignedLongLong((unsigned long long)(ihi ^ U64_FLIP));
    } else {
        plo = PyLong_FromLongLong(ilo);
        phi = PyLong_FromLongLong(ihi);
    }
    return Py_BuildValue("NNddLLLLd", plo, phi, s1, s2, zeros, 0LL, 0LL, 0LL, job.centre);
}

static PyMethodDef methods[] = {
    {"stats", stats, METH_VARARGS, stats_doc},
    {"histogram", histogram, METH_VARARGS, histogram_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fused", "One fused statistics pass over strided CPU buffers (optional C helper).", -1, methods,
};

PyMODINIT_FUNC PyInit__fused(void) {
#if defined(HAVE_FLOAT16) && defined(__linux__) && !defined(__clang__)
    __builtin_cpu_init();
    use_f16c = __builtin_cpu_supports("f16c") && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    PyObject *m = PyModule_Create(&module);
    if (m && PyModule_AddIntConstant(m, "f16c", use_f16c) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}

