"""Build of the optional compiled helper ``rot180.functional._directc`` (see _direct.py).

Everything else is in pyproject.toml. ``optional=True``: without a C compiler the install still
succeeds and rot180 runs its pure-NumPy engine (the helper only makes small-channel layers
faster; results are the same to rounding).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "rot180.functional._directc",
            sources=["src/rot180/functional/_directc.c"],
            extra_compile_args=["-O3", "-Werror=implicit-function-declaration"],
            optional=True,
        )
    ]
)
