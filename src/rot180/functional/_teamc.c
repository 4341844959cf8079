/* _teamc: the one wait of rot180's thread team (_team.py) that Python cannot write, a spin.
 *
 *   wait_change(cells, index, seen, spin_ns, *, signal=-1, value=0, watch=-1,
 *               settle_ns=0) -> int
 *       with the GIL released: cells[signal] = value, then cells[index] once it differs
 *       from `seen` (returned settle_ns later), or the value seen last once spin_ns
 *       nanoseconds passed or cells[watch] is not 0 (a waiter went to sleep and must be woken
 *       under the GIL)
 *   store(cells, index, value)
 *       cells[index] = value, then a full fence (a sleeper's flag, read by a spinner)
 *
 * Why: a team member that sleeps between two jobs (a futex, a condition variable) takes
 * 30-360 us to wake on this machine's virtual CPUs, as long as a small chunk takes; one that
 * spins a moment sees the next job in well under a microsecond (BENCHMARKS.md, "Issue 13,
 * eighth pass"). A Python loop cannot spin: it would hold the GIL the caller needs. The cell is
 * only the signal: the job itself is a Python object read under the GIL after the change is
 * seen, and the GIL's release and acquire order the two.
 *
 * settle_ns: a worker that sees its job at once asks for the GIL while the poster still holds
 * it (running its own chunk's first Python lines), and a contended GIL puts the asker to sleep
 * (a wake-up again). A couple of microseconds' more spin lets the poster reach the first call
 * that releases it: an empty round 37-40 -> 22-25 us, a 2 MiB ReLU on two threads 130-150 ->
 * 85-100 us (settle 1.5-3 us; 10 us is worse again, 30 us worse than none).
 */
#include "_glue.h"

#include <sched.h>
#include <stdint.h>
#include <time.h>

static int64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* A hint to the core that this is a spin (x86 PAUSE, Arm YIELD): the sibling hardware thread
 * runs meanwhile, and the loop exits without a memory-order flush. */
static inline void relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* Spin while *cell == seen, at most spin_ns, or until *watch (if any) is not 0. */
static int64_t spin(const int64_t *cell, int64_t seen, int64_t spin_ns, const int64_t *watch)
{
    int64_t v = __atomic_load_n(cell, __ATOMIC_SEQ_CST);
    if (v != seen || spin_ns <= 0) return v;
    const int64_t start = now_ns();
    for (unsigned n = 1;; n++) {
        for (int i = 0; i < 16; i++) {      /* ~0.1-1 us between two reads of the clock */
            relax();
            v = __atomic_load_n(cell, __ATOMIC_SEQ_CST);
            if (v != seen) return v;
            if (watch && __atomic_load_n(watch, __ATOMIC_SEQ_CST)) return v;
        }
        if (now_ns() - start >= spin_ns) return v;
        /* Every few microseconds, let a thread queued on this CPU run: the scheduler places a
         * thread it wakes (a team member woken from its sleep) on the waker's CPU, and a spin
         * that never yields kept it waiting for the next scheduler tick (calls after an idle
         * moment took 10 ms, the caller's whole spin, instead of 1.5). */
        if (n % 8 == 0) sched_yield();
    }
}

/* cells as a 1-D int64 array, held in a; -1 with TypeError otherwise. */
static int get_cells(Arg *a, PyObject *obj, const char *fn)
{
    if (get_buffer(a, obj, fn, "cells", PyBUF_WRITABLE, "writable int64 array") < 0) return -1;
    const char code = format_code(&a->view);
    if (a->view.itemsize != 8 || (code != 'q' && code != 'l') || a->view.ndim != 1 ||
        a->view.strides[0] != 8 || (uintptr_t)a->view.buf % 8) {
        PyErr_Format(PyExc_TypeError, "%s: cells must be a contiguous 1-D int64 array (as "
                     "np.zeros(n, np.int64)), got format '%s' with %d axes", fn,
                     format_of(&a->view), a->view.ndim);
        return -1;
    }
    return 0;
}

/* &cells[index], or NULL with ValueError; index -1 (where allowed) gives *none. */
static int cell_at(const Arg *a, const char *fn, const char *name, Py_ssize_t index, int optional,
                   int64_t **out)
{
    const Py_ssize_t n = a->view.shape[0];
    *out = NULL;
    if (optional && index == -1) return 0;
    if (index < 0 || index >= n) {
        PyErr_Format(PyExc_ValueError, "%s: %s must be in [0, %zd)%s, got %zd", fn, name, n,
                     optional ? " or -1" : "", index);
        return -1;
    }
    *out = (int64_t *)a->view.buf + index;
    return 0;
}

static PyObject *py_wait_change(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kwds)
{
    static char *kw[] = {"cells", "index", "seen", "spin_ns", "signal", "value", "watch",
                         "settle_ns", NULL};
    static const char *fn = "wait_change";
    PyObject *ocells;
    Py_ssize_t index, signal = -1, watch = -1;
    long long seen, spin_ns, value = 0, settle_ns = 0;
    int64_t v = 0, *cell, *sig, *wat;
    Arg a[1] = {{.held = 0}};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OnLL|$nLnL", kw, &ocells, &index, &seen,
                                     &spin_ns, &signal, &value, &watch, &settle_ns))
        return NULL;
    if (get_cells(&a[0], ocells, fn) < 0 || cell_at(&a[0], fn, "index", index, 0, &cell) < 0 ||
        cell_at(&a[0], fn, "signal", signal, 1, &sig) < 0 ||
        cell_at(&a[0], fn, "watch", watch, 1, &wat) < 0)
        goto out;
    Py_BEGIN_ALLOW_THREADS
    /* The signal is written once the GIL is released: whoever waits for it takes the GIL
     * without contention (a contended GIL puts the taker to sleep: a wake-up again). */
    if (sig) __atomic_store_n(sig, (int64_t)value, __ATOMIC_SEQ_CST);
    v = spin(cell, (int64_t)seen, (int64_t)spin_ns, wat);
    if (v != (int64_t)seen && settle_ns > 0) {  /* see the header */
        const int64_t start = now_ns();
        while (now_ns() - start < settle_ns) relax();
    }
    Py_END_ALLOW_THREADS
out:
    release(a, 1);
    if (PyErr_Occurred()) return NULL;
    return PyLong_FromLongLong((long long)v);
}

static PyObject *py_store(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kwds)
{
    static char *kw[] = {"cells", "index", "value", NULL};
    static const char *fn = "store";
    PyObject *ocells;
    Py_ssize_t index;
    long long value;
    int64_t *cell;
    Arg a[1] = {{.held = 0}};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OnL", kw, &ocells, &index, &value)) return NULL;
    if (get_cells(&a[0], ocells, fn) == 0 && cell_at(&a[0], fn, "index", index, 0, &cell) == 0)
        __atomic_store_n(cell, (int64_t)value, __ATOMIC_SEQ_CST);   /* then a full fence */
    return finish(a, 1);
}

static PyMethodDef methods[] = {
    METHOD(wait_change, "wait_change(cells, index, seen, spin_ns, *, signal=-1, value=0,\n"
                        "watch=-1, settle_ns=0): with the GIL released, cells[signal] = value,\n"
                        "then spin until cells[index] != seen (its value, after settle_ns\n"
                        "more), spin_ns pass or cells[watch] != 0 (the value seen last)."),
    METHOD(store, "store(cells, index, value): cells[index] = value, then a full fence."),
    {NULL, NULL, 0, NULL},
};

MODULE(_teamc, "The spin of rot180's thread team (see _team.py).", methods)
