/* The Python-facing glue of rot180's compiled helpers (_directc.c, _depthwisec.c,
 * _winogradc.c, _fusedc.c, _teamc.c), written once: what stands between a helper's keyword
 * arguments and its loops.
 *
 *   sizes             overflow(), mul_add(): overflow-checked size arithmetic (OverflowError)
 *   array arguments   Arg; get_float_array() (buffer, dtype, axes, C order, writability), or the
 *                     steps it is made of for a helper with other rules (get_buffer(),
 *                     check_float(), check_layout()); check_extents(), whole_stride(), holds();
 *                     release() and finish() (release, then None, or NULL on an error)
 *   agreement         same(): an axis of one argument against a size another one gave
 *   the loops         BY_DTYPE(): name_f32 or name_f64 by the call's dtype, the GIL released
 *   int sequences     get_ints(): stride=, dilation=, pads= and the like
 *   the module        METHOD(), MODULE(): method-table entries, the module and its PyInit_
 *   the build switch  MULTI / ROT180_CLONES: target clones, or -DROT180_PORTABLE's plain code
 *   the vector loops  LOAD() / STORE() (unaligned vectors), WIDE_REGISTERS() (AVX-512's 32)
 *
 * Each helper composes its own get_array() from these, because the rules differ (strided
 * arrays in _winogradc.c and _depthwisec.c, an int64 argmax in _fusedc.c). Every error names
 * the function and the argument, what was expected and what was given: TypeError for a wrong
 * type, ValueError for a wrong value, OverflowError for a size no array has. tests/ match the
 * messages, so a change to a message here changes them for all the helpers.
 *
 * Why a header, not a module of its own: each helper is its own optional extension module (setup.py:
 * one that fails to build leaves the others), loaded alone, and tests/test_directc_build.py
 * compiles _directc.c by itself with `cc`. Shared code in a module of its own would need a
 * capsule and an import order between helpers; static inline functions compile into each helper
 * (the ones a helper does not call are dropped without an unused-function warning). setup.py
 * lists this file in every Extension's depends=, so a change here rebuilds them all.
 *
 * Include it first (it defines PY_SSIZE_T_CLEAN and includes Python.h).
 */
#ifndef ROT180_GLUE_H
#define ROT180_GLUE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h> /* memcpy: LOAD, STORE */

/* --- the build switch -----------------------------------------------------------------------
 *
 * One build holds the code for the widest vectors the running CPU has (GCC function
 * multi-versioning: x86-64-v4, v3 and the default, picked at load time). Built with
 * -DROT180_PORTABLE (CFLAGS="-DROT180_PORTABLE" pip install ...): no target clones, the plain
 * code for the flags the compiler was given, what a compiler or CPU without them gets
 * (tests/test_directc_build.py runs _directc's tests against such a build). */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) &&  \
    !defined(ROT180_PORTABLE)
#define ROT180_CLONES 1
#define MULTI __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define ROT180_CLONES 0
#define MULTI
#endif

/* --- the vector loops ----------------------------------------------------------------------
 *
 * Unaligned vector load / store of a GCC vector type V (numpy guarantees only element
 * alignment). WIDE_REGISTERS(narrow): whether the CPU has 32 vector registers (x86 AVX-512),
 * for the wider tiles; `narrow` (a per-call argument) asks for the tiles of CPUs without them
 * even there (tests run both kinds on one machine). */
#define LOAD(V, p) ({ V v_; memcpy(&v_, (p), sizeof(V)); v_; })
#define STORE(V, p, v) do { V t_ = (v); memcpy((p), &t_, sizeof(V)); } while (0)
#if defined(__GNUC__) && defined(__x86_64__)
#define WIDE_REGISTERS(narrow) (!(narrow) && __builtin_cpu_supports("avx512f"))
#else
#define WIDE_REGISTERS(narrow) 0
#endif

/* --- sizes ---------------------------------------------------------------------------------- */

/* Every size the glue derives from its arguments goes through these: a product or sum that
 * wraps around would let a small (even zero-byte) buffer pass the size checks and the loops
 * run past it. -1 with OverflowError set. */
static inline int overflow(const char *fn, const char *what)
{
    PyErr_Format(PyExc_OverflowError, "%s: %s overflows a Py_ssize_t; the sizes given are not "
                 "those of any array", fn, what);
    return -1;
}

/* *out = a * b + c, checked. */
static inline int mul_add(Py_ssize_t *out, const char *fn, const char *what, Py_ssize_t a,
                          Py_ssize_t b, Py_ssize_t c)
{
    Py_ssize_t r;
    if (__builtin_mul_overflow(a, b, &r) || __builtin_add_overflow(r, c, &r))
        return overflow(fn, what);
    *out = r;
    return 0;
}

/* --- array arguments ------------------------------------------------------------------------ */

#define ARG_AXES 6 /* the most axes an array argument has (_directc.c's x, dz and out) */

/* An array argument: its buffer, held (to be released) once get_buffer() has it, and the
 * strides in elements of the axes whole_stride() checked. Initialise with {.held = 0}. */
typedef struct {
    Py_buffer view;
    int held;
    Py_ssize_t st[ARG_AXES];
} Arg;

/* get_float_array()'s and check_layout()'s rules, or-ed. */
#define ARG_WRITABLE 1      /* writable: ValueError for a read-only array */
#define ARG_CONTIGUOUS 2    /* C-contiguous: ValueError otherwise */
#define ARG_ASK_WRITABLE 4  /* a writable buffer asked of the exporter: TypeError "must be a
                             * writable float32 or float64 array" for a read-only one */

static inline const char *dtype_name(char k) { return k == 'f' ? "float32" : "float64"; }

/* The buffer's format for messages ("B", bytes, where the exporter gives none). */
static inline const char *format_of(const Py_buffer *v) { return v->format ? v->format : "B"; }

/* The format as one struct character ('f', 'd', 'q', ...), a leading '<', '=' or '@' dropped;
 * 0 for a longer format. */
static inline char format_code(const Py_buffer *v)
{
    const char *f = format_of(v);
    if (f[0] == '<' || f[0] == '=' || f[0] == '@') f++;
    return f[0] != '\0' && f[1] == '\0' ? f[0] : 0;
}

/* obj's buffer with its strides and format (and PyBUF_WRITABLE if in `flags`), held in `a`:
 * TypeError "fn: name must be a <expected>, got <type>" where obj exports none. */
static inline int get_buffer(Arg *a, PyObject *obj, const char *fn, const char *name, int flags,
                             const char *expected)
{
    a->held = 0;
    if (PyObject_GetBuffer(obj, &a->view, PyBUF_STRIDES | PyBUF_FORMAT | flags) < 0) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "%s: %s must be a %s, got %.100s", fn, name, expected,
                     Py_TYPE(obj)->tp_name);
        return -1;
    }
    a->held = 1;
    return 0;
}

/* float32 or float64, all arrays of a call alike: the first passes *kind == 0 and sets it ('f'
 * or 'd'), the others must match it. TypeError. */
static inline int check_float(const Arg *a, const char *fn, const char *name, char *kind)
{
    const char k = format_code(&a->view);
    if (!(k == 'f' || k == 'd') || (*kind && k != *kind)) {
        PyErr_Format(PyExc_TypeError, "%s: %s must be %s, got format '%s'%s", fn, name,
                     *kind ? dtype_name(*kind) : "float32 or float64", format_of(&a->view),
                     *kind ? " (all arrays of a call have one dtype)" : "");
        return -1;
    }
    *kind = k;
    return 0;
}

/* `ndim` axes, named `axes` in the message ("(B, C, H, W)"), then ARG_CONTIGUOUS and
 * ARG_WRITABLE of `flags`. ValueError. */
static inline int check_layout(const Arg *a, const char *fn, const char *name, int ndim,
                               const char *axes, int flags)
{
    const Py_buffer *v = &a->view;
    if (v->ndim != ndim) {
        PyErr_Format(PyExc_ValueError, "%s: %s must have %d axes %s, got %d", fn, name, ndim,
                     axes, v->ndim);
        return -1;
    }
    if ((flags & ARG_CONTIGUOUS) && !PyBuffer_IsContiguous(v, 'C')) {
        PyErr_Format(PyExc_ValueError, "%s: %s must be C-contiguous (np.ascontiguousarray)", fn,
                     name);
        return -1;
    }
    if ((flags & ARG_WRITABLE) && v->readonly) {
        PyErr_Format(PyExc_ValueError, "%s: %s must be writable, got a read-only array", fn,
                     name);
        return -1;
    }
    return 0;
}

/* A float32 or float64 array argument of `ndim` axes with the rules in `flags`: get_buffer(),
 * check_float(), check_layout(). */
static inline int get_float_array(Arg *a, PyObject *obj, const char *fn, const char *name,
                                  int ndim, const char *axes, int flags, char *kind)
{
    const int ask = flags & ARG_ASK_WRITABLE;
    if (get_buffer(a, obj, fn, name, ask ? PyBUF_WRITABLE : 0,
                   ask ? "writable float32 or float64 array" : "float32 or float64 array") < 0 ||
        check_float(a, fn, name, kind) < 0 || check_layout(a, fn, name, ndim, axes, flags) < 0)
        return -1;
    return 0;
}

/* Axis i's stride must be whole elements (ValueError, the message ending in `hint`); kept in
 * elements in a->st[i]. i < ARG_AXES. */
static inline int whole_stride(Arg *a, const char *fn, const char *name, int i, const char *hint)
{
    const Py_ssize_t s = a->view.strides[i];
    if (s % a->view.itemsize) {
        PyErr_Format(PyExc_ValueError, "%s: %s's strides must be whole elements, got %zd bytes "
                     "on axis %d%s", fn, name, s, i, hint);
        return -1;
    }
    a->st[i] = s / a->view.itemsize;
    return 0;
}

/* The extents of a (checked by check_layout()): the product in bytes of the non-zero ones must
 * fit (OverflowError naming the array), so that no product of some of one array's extents,
 * which the loops form, can wrap (checked here once). With a `hint`, also whole_stride() of
 * each axis, axis by axis. *bytes (if not NULL): the length the shape says, 0 with a zero
 * extent. */
static inline int check_extents(Arg *a, const char *fn, const char *name, const char *hint,
                                Py_ssize_t *bytes)
{
    const Py_buffer *v = &a->view;
    Py_ssize_t nonzero = v->itemsize;
    int empty = 0;
    for (int i = 0; i < v->ndim; i++) {
        if (v->shape[i] < 0) return overflow(fn, name);
        if (v->shape[i] == 0) empty = 1;
        else if (__builtin_mul_overflow(nonzero, v->shape[i], &nonzero))
            return overflow(fn, name);
        if (hint && whole_stride(a, fn, name, i, hint) < 0) return -1;
    }
    if (bytes) *bytes = empty ? 0 : nonzero;
    return 0;
}

/* The exporter's length must be `bytes`, what the shape says: the loops index by shape.
 * ValueError. */
static inline int holds(const Arg *a, const char *fn, const char *name, Py_ssize_t bytes)
{
    if (bytes == a->view.len) return 0;
    PyErr_Format(PyExc_ValueError, "%s: %s holds %zd bytes, its shape says %zd", fn, name,
                 a->view.len, bytes);
    return -1;
}

static inline void release(Arg *args, int n)
{
    for (int i = 0; i < n; i++)
        if (args[i].held) PyBuffer_Release(&args[i].view);
}

/* A call's one exit (`out:`, where the error paths jump and the success path runs into): its n
 * array arguments released, then NULL if the call failed (an error is set), else None. Python's
 * rule, NULL exactly when an error is set, so holds on every path. */
static inline PyObject *finish(Arg *args, int n)
{
    release(args, n);
    if (PyErr_Occurred()) return NULL;
    Py_RETURN_NONE;
}

/* The loops of the call's dtype, name_f32(...) for kind 'f', else name_f64(...), on the same
 * arguments, with the GIL released (the loops touch only the buffers the call holds, so Python
 * threads can run other ranges at once). A statement. */
#define BY_DTYPE(kind, name, ...)                                                               \
    do {                                                                                        \
        Py_BEGIN_ALLOW_THREADS                                                                  \
        if ((kind) == 'f')                                                                      \
            name##_f32(__VA_ARGS__);                                                            \
        else                                                                                    \
            name##_f64(__VA_ARGS__);                                                            \
        Py_END_ALLOW_THREADS                                                                    \
    } while (0)

/* --- agreement between arguments ------------------------------------------------------------ */

/* Axis `i` (called `axis` in the message) of argument `a` must equal `want` (which `from`
 * named). ValueError. */
static inline int same(const char *fn, const Arg *a, const char *name, int i, const char *axis,
                       Py_ssize_t want, const char *from)
{
    const Py_ssize_t got = a->view.shape[i];
    if (got == want) return 0;
    PyErr_Format(PyExc_ValueError, "%s: %s has %s = %zd (axis %d), expected %zd as in %s", fn,
                 name, axis, got, i, want, from);
    return -1;
}

/* --- int sequences -------------------------------------------------------------------------- */

/* n ints (a tuple or list of n objects with __index__) into v, each >= low; `what` the form the
 * TypeError asks for ("a pair of ints"); obj NULL (a keyword not given) reads as None.
 * TypeError for anything but n ints, OverflowError for one past a Py_ssize_t, ValueError for one
 * below low, each naming the keyword (name=) and, but the overflow, what was given. */
static inline int get_ints(PyObject *obj, Py_ssize_t *v, int n, Py_ssize_t low, const char *fn,
                           const char *name, const char *what)
{
    PyObject *seq = obj ? PySequence_Fast(obj, "") : NULL;
    if (!seq || PySequence_Fast_GET_SIZE(seq) != n) {
        Py_XDECREF(seq);
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError, "%s: %s= must be %s, got %R", fn, name, what,
                     obj ? obj : Py_None);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq, i);
        if (!PyIndex_Check(item)) {
            PyErr_Format(PyExc_TypeError, "%s: %s= must be %s, got %R", fn, name, what, obj);
            Py_DECREF(seq);
            return -1;
        }
        v[i] = PyNumber_AsSsize_t(item, PyExc_OverflowError);
        if (v[i] == -1 && PyErr_Occurred()) {
            Py_DECREF(seq);
            PyErr_Clear();
            PyErr_Format(PyExc_OverflowError, "%s: %s[%d] does not fit a Py_ssize_t", fn, name, i);
            return -1;
        }
        if (v[i] < low) {
            PyErr_Format(PyExc_ValueError, "%s: %s= must be ints >= %zd, got %R", fn, name, low,
                         obj);
            Py_DECREF(seq);
            return -1;
        }
    }
    Py_DECREF(seq);
    return 0;
}

/* --- the module ----------------------------------------------------------------------------- */

/* A method-table entry: the keyword function py_<name>(self, args, kwds) as `name`. */
#define METHOD(name, doc)                                                                       \
    {#name, (PyCFunction)(void (*)(void))py_##name, METH_VARARGS | METH_KEYWORDS, doc}

/* The extension module `name` (the helper's file name, so that its init is PyInit_<name>) with
 * the functions of the PyMethodDef table `methods` (ended by {NULL, NULL, 0, NULL}); no state
 * (m_size -1: one instance, never re-initialised). */
#define MODULE(name, doc, methods)                                                              \
    static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, #name, doc, -1, methods,     \
                                            NULL, NULL, NULL, NULL};                            \
    PyMODINIT_FUNC PyInit_##name(void) { return PyModule_Create(&module_def); }

#endif /* ROT180_GLUE_H */
