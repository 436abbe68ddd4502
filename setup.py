"""Build hook for the optional C helper; everything else about the package is in pyproject.toml.

``tensormagic.engine.tensorinfo.statistics._fused`` computes min, max, centred float64 sums
and the zero count of a float32/float64 buffer in one multi-threaded pass (the CPU fast path
of ``%tensorinfo``).  It is optional: without a C compiler the build goes on and the statistics
take the pure torch path.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "tensormagic.engine.tensorinfo.statistics._fused",
            ["tensormagic/engine/tensorinfo/statistics/_fused.c"],
            extra_compile_args=["-O3", "-pthread"],
            extra_link_args=["-pthread"],
            optional=True,
        )
    ]
)
