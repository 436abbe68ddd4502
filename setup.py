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
            depends=[f"tensormagic/engine/tensorinfo/statistics/fused_{part}.h" for part in ("common", "float64", "narrow", "int")],
            # No -ffast-math and no FMA contraction: the same IEEE operations on every machine.
            # OpenMP: the threads of the runtime torch already loaded (libgomp), not new ones.
            extra_compile_args=["-O3", "-pthread", "-fopenmp", "-ffp-contract=off", "-fno-fast-math"],
            extra_link_args=["-pthread", "-fopenmp"],
            optional=True,
        )
    ]
)
