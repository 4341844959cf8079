"""Build of the optional compiled helpers ``rot180.functional._directc`` (see _direct.py),
``_fusedc`` (_fused.py), ``_winogradc`` (_winograd.py), ``_depthwisec`` (_depthwise.py) and
``_teamc`` (_team.py).

Everything else is in pyproject.toml. ``optional=True``: without a C compiler the install still
succeeds and rot180 runs its pure-NumPy engine (the helper only makes small-channel layers
faster; results are the same to rounding).
"""

from setuptools import Extension, setup

# The Python-facing glue every helper includes (argument checks, overflow-checked sizes, the
# ROT180_PORTABLE switch): listed in each Extension's depends= so that a change to it rebuilds
# them all, and so shipped in the sdist with the sources.
GLUE = ["src/rot180/functional/_glue.h"]


def helper(name: str, *flags: str) -> Extension:
    """The optional extension ``rot180.functional.<name>`` from ``<name>.c`` (a helper that
    fails to build leaves the others; without it its NumPy twin runs)."""
    return Extension(f"rot180.functional.{name}", sources=[f"src/rot180/functional/{name}.c"],
                     depends=GLUE,
                     extra_compile_args=[*flags, "-Werror=implicit-function-declaration"],
                     optional=True)


setup(
    ext_modules=[
        # -fno-gcse / -fno-gcse-after-reload: GCC 12's RTL PRE and the load CSE after reload
        # took 55 % of the -O3 build here (73.5 s -> 33.1 s without them, the helper's three
        # target clones compiled serially); the kernels are explicit vector code, and rot180
        # bench timed the six layers the same within noise either way (BENCHMARKS.md, "Install
        # time"). CFLAGS="-DROT180_PORTABLE" builds the plain code alone (no target clones, no
        # asm: what a compiler or CPU without them gets; tests/test_directc_build.py runs the
        # helper's tests against it), CFLAGS="-DROT180_NO_ASM" leaves out only the register pin
        # (to measure it again).
        helper("_directc", "-O3", "-fno-gcse", "-fno-gcse-after-reload"),
        # One-pass BatchNorm / ReLU / pooling kernels (see _fused.py). -fopenmp-simd: only the
        # `omp simd` reductions (float64 sums vectorised in a fixed order), no OpenMP runtime.
        # -fno-trapping-math: GCC 12 if-converts (vectorises) the ReLU-masked loops only so
        # (12 ms -> 1 ms for 2M float32 values); no FP exceptions are relied on. Without it
        # _fused.py runs NumPy.
        helper("_fusedc", "-O3", "-fopenmp-simd", "-fno-trapping-math"),
        # Winograd F(2x2, 3x3)'s input, output and kernel transforms, one pass each (see
        # _winograd.py). Without it _winograd.py runs NumPy.
        helper("_winogradc", "-O3"),
        # Plane-wise loops for few channels per group: depthwise layers (see _depthwise.py).
        # Without it depthwise accepts nothing and the other realisations run.
        helper("_depthwisec", "-O3"),
        # The thread team's spin (see _team.py). Without it the team's members sleep between
        # jobs (the same results, slower hand-offs).
        helper("_teamc", "-O2"),
    ]
)
