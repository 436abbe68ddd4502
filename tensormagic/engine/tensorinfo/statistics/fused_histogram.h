/* The C pass (see _fused.c): the histogram's counts over every element, in one read.
 *
 * histogram(address, kind, shape, strides, edges, threads) -> counts
 *
 * Bins follow numpy.histogram: equal bins between edges[0] and edges[-1], the last one closed;
 * a value's bin comes from the float64 quotient, then is corrected against the edges, so that
 * edges[i] <= x < edges[i + 1] holds exactly (NaN, inf and values outside are left out).  Counts
 * are integers: summed per thread, then added, they do not depend on the thread count. */
#ifndef FUSED_HISTOGRAM_H
#define FUSED_HISTOGRAM_H

#include "fused_common.h"

#define MAX_HIST_BINS 1024
#define HIST_COPIES 4 /* neighbouring elements count into different copies (no store stalls) */

typedef struct {
    const char *base;
    int kind, ndim, bins;
    Py_ssize_t shape[MAX_DIMS], stride[MAX_DIMS];
    Py_ssize_t n;
    double lo, hi, half_lo, norm, near; /* near: how close (in bins) to an edge is checked */
    const double *edges;
    long long *counts; /* threads x HIST_COPIES x bins */
    int threads;
} HistJob;

static const char *hist_address(const HistJob *job, Py_ssize_t i) {
    return element_at(job->base, job->ndim, job->shape, job->stride, i);
}

/* A run of `len` elements `s` bytes apart: each value's bin (from the quotient, corrected against
 * the edges), counted into one of HIST_COPIES copies by position. */
#define HIST_KERNEL(NAME, GET)                                                                  \
    static void hist_run_##NAME(const char *__restrict p, Py_ssize_t len, Py_ssize_t s, const HistJob *job, long long *__restrict c) { \
        const double lo = job->lo, hi = job->hi, half_lo = job->half_lo, norm = job->norm;   \
        const double near = job->near, far = 1.0 - job->near;                                  \
        const double *edges = job->edges;                                                      \
        const long long last = job->bins - 1;                                                  \
        const Py_ssize_t bins = job->bins;                                                     \
        for (Py_ssize_t k = 0; k < len; k++) {                                                 \
            double x = (double)GET(p + k * s);                                                 \
            if (!(x >= lo && x <= hi))                                                         \
                continue; /* NaN, inf, outside */                                              \
            double f = (x * 0.5 - half_lo) * norm;                                             \
            long long i = (long long)f;                                                        \
            double r = f - (double)i; /* where in its bin: near an edge, ask the edges */      \
            i = i > last ? last : (i < 0 ? 0 : i);                                             \
            if (r < near || r > far || i == last) {                                            \
                i -= x < edges[i];                                                             \
                i += (i != last) & (x >= edges[i + 1]);                                        \
            }                                                                                  \
            c[(k & (HIST_COPIES - 1)) * bins + i]++;                                           \
        }                                                                                      \
    }                                                                                          \
    static void hist_##NAME(const HistJob *job, Py_ssize_t start, Py_ssize_t stop, long long *c) { \
        const Py_ssize_t inner = job->shape[job->ndim - 1], s = job->stride[job->ndim - 1];     \
        Py_ssize_t i = start;                                                                  \
        while (i < stop) {                                                                     \
            Py_ssize_t col = i % inner, len = inner - col;                                     \
            if (len > stop - i)                                                                \
                len = stop - i;                                                                \
            hist_run_##NAME(hist_address(job, i), len, s, job, c);                             \
            i += len;                                                                          \
        }                                                                                      \
    }

INLINE double get_u64_double(const char *p) { return (double)(unsigned long long)get_u64(p); }
HIST_KERNEL(f32, get_f32)
HIST_KERNEL(f64, get_f64)
HIST_KERNEL(f16, get_f16)
HIST_KERNEL(bf16, get_bf16)
HIST_KERNEL(i8, get_i8)
HIST_KERNEL(i16, get_i16)
HIST_KERNEL(i32, get_i32)
HIST_KERNEL(i64, get_i64)
HIST_KERNEL(u8, get_u8)
HIST_KERNEL(u16, get_u16)
HIST_KERNEL(u32, get_u32)
HIST_KERNEL(u64, get_u64_double)

static void hist_part(const HistJob *job, int t, int count) {
    Py_ssize_t start = job->n * t / count, stop = job->n * (t + 1) / count;
    long long *c = job->counts + (size_t)t * HIST_COPIES * job->bins;
    switch (job->kind) {
    case K_F32: hist_f32(job, start, stop, c); break;
    case K_F64: hist_f64(job, start, stop, c); break;
    case K_F16: hist_f16(job, start, stop, c); break;
    case K_BF16: hist_bf16(job, start, stop, c); break;
    case K_I8: hist_i8(job, start, stop, c); break;
    case K_I16: hist_i16(job, start, stop, c); break;
    case K_I32: hist_i32(job, start, stop, c); break;
    case K_I64: hist_i64(job, start, stop, c); break;
    case K_U8: hist_u8(job, start, stop, c); break;
    case K_U16: hist_u16(job, start, stop, c); break;
    case K_U32: hist_u32(job, start, stop, c); break;
    default: hist_u64(job, start, stop, c); break;
    }
}

static void hist_part_of(const void *job, int t, int count) {
    hist_part((const HistJob *)job, t, count);
}

PyDoc_STRVAR(histogram_doc,
             "histogram(address, kind, shape, strides, edges, threads) -> counts\n\n"
             "Counts of the elements at `address` (laid out by `shape` and `strides` in bytes, >= 0) in\n"
             "the bins between the float64 `edges` (equal widths, at most 1024 bins), numpy.histogram's\n"
             "rule: the last bin closed, NaN, inf and values outside left out.  Not for bool.");

static PyObject *histogram(PyObject *self, PyObject *args) {
    PyObject *address, *shape_obj, *strides_obj, *edges_obj;
    const char *kind_name;
    int threads;
    if (!PyArg_ParseTuple(args, "OsOOOi", &address, &kind_name, &shape_obj, &strides_obj, &edges_obj, &threads))
        return NULL;
    HistJob job;
    memset(&job, 0, sizeof job);
    job.kind = -1;
    for (int k = 0; k < N_KINDS; k++)
        if (strcmp(kind_name, KIND_NAMES[k]) == 0)
            job.kind = k;
    if (job.kind < 0 || job.kind == K_BOOL) {
        PyErr_Format(PyExc_TypeError, "histogram() has no kernel for %s", kind_name);
        return NULL;
    }
    job.base = (const char *)PyLong_AsVoidPtr(address);
    if (PyErr_Occurred())
        return NULL;
    PyObject *shape = PySequence_Fast(shape_obj, "shape must be a sequence");
    PyObject *strides = shape ? PySequence_Fast(strides_obj, "strides must be a sequence") : NULL;
    PyObject *edges = strides ? PySequence_Fast(edges_obj, "edges must be a sequence") : NULL;
    if (!edges) {
        Py_XDECREF(shape);
        Py_XDECREF(strides);
        return NULL;
    }
    Py_ssize_t ndim = PySequence_Fast_GET_SIZE(shape), nedges = PySequence_Fast_GET_SIZE(edges);
    int bad = ndim < 1 || ndim > MAX_DIMS || PySequence_Fast_GET_SIZE(strides) != ndim || nedges < 2 || nedges > MAX_HIST_BINS + 1;
    double *edge_values = bad ? NULL : (double *)malloc((size_t)nedges * sizeof(double));
    if (!bad && edge_values) {
        job.ndim = (int)ndim;
        job.n = 1;
        for (Py_ssize_t d = 0; d < ndim; d++) {
            job.shape[d] = PyLong_AsSsize_t(PySequence_Fast_GET_ITEM(shape, d));
            job.stride[d] = PyLong_AsSsize_t(PySequence_Fast_GET_ITEM(strides, d));
            if ((job.shape[d] < 1 || job.stride[d] < 0) && !PyErr_Occurred())
                PyErr_SetString(PyExc_ValueError, "histogram() takes sizes >= 1 and strides >= 0");
            job.n *= job.shape[d];
        }
        for (Py_ssize_t e = 0; e < nedges; e++)
            edge_values[e] = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(edges, e));
    }
    Py_DECREF(shape);
    Py_DECREF(strides);
    Py_DECREF(edges);
    if (bad) {
        PyErr_SetString(PyExc_ValueError, "histogram() takes 1 to 16 dimensions, as many strides as sizes, 2 to 1025 edges");
        return NULL;
    }
    if (!edge_values)
        return PyErr_NoMemory();
    if (PyErr_Occurred() || !(edge_values[0] < edge_values[nedges - 1])) {
        free(edge_values);
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "histogram() needs edges[0] < edges[-1]");
        return NULL;
    }
    job.bins = (int)(nedges - 1);
    job.edges = edge_values;
    job.lo = edge_values[0];
    job.hi = edge_values[nedges - 1];
    job.half_lo = job.lo * 0.5;
    job.norm = job.bins / (job.hi * 0.5 - job.lo * 0.5);
    /* The quotient and the edges are each a few roundings off the exact bin positions: values
     * farther than `near` bins from an edge are in the quotient's bin for sure (64 ulps of the
     * largest magnitude, in bins, plus the quotient's own rounding); nearer ones ask the edges. */
    {
        double mag = fabs(job.lo) > fabs(job.hi) ? fabs(job.lo) : fabs(job.hi);
        double ulp = nextafter(mag, __builtin_inf()) - mag;
        job.near = 1e-9 + 64.0 * ulp * job.norm * 0.5 + 64.0 * 0x1p-52 * job.bins;
        if (!(job.near < 0.25))
            job.near = 2.0; /* bins too narrow for their magnitude: always ask the edges */
    }
    if (threads < 1)
        threads = 1;
    if (threads > MAX_THREADS)
        threads = MAX_THREADS;
    if (threads > job.n)
        threads = (int)job.n;
    job.threads = threads;
    job.counts = (long long *)calloc((size_t)threads * HIST_COPIES * job.bins, sizeof(long long));
    if (!job.counts) {
        free(edge_values);
        return PyErr_NoMemory();
    }
    Py_BEGIN_ALLOW_THREADS;
    run_parts(hist_part_of, &job, job.threads);
    Py_END_ALLOW_THREADS;
    PyObject *out = PyTuple_New(job.bins);
    for (int b = 0; out && b < job.bins; b++) {
        long long total = 0;
        for (int k = 0; k < threads * HIST_COPIES; k++)
            total += job.counts[(size_t)k * job.bins + b];
        PyTuple_SET_ITEM(out, b, PyLong_FromLongLong(total));
    }
    free(job.counts);
    free(edge_values);
    return out;
}

#endif /* FUSED_HISTOGRAM_H */
