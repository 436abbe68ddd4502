"""Build hook for the optional C helper; everything else about the package is in pyproject.toml.

``tensormagic.engine.tensorinfo.statistics._fused`` computes the statistics of a CPU tensor or
array of any common dtype and layout in one multi-threaded pass (the CPU fast path of
``%tensorinfo``).  It is optional: without a C compiler the build goes on and the statistics
take the pure torch path; a compiler without OpenMP builds it on POSIX threads instead.
"""

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

#: No -ffast-math and no FMA contraction: the same IEEE operations on every machine.
FLAGS = ["-O3", "-pthread", "-ffp-contract=off", "-fno-fast-math"]
#: OpenMP: the threads of the runtime torch has already loaded (libgomp), not new ones.
OPENMP = ["-fopenmp"]


class BuildExt(build_ext):
    """Build with OpenMP, and again without it when the compiler has none."""

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception:  # noqa: BLE001 - CompileError, LinkError, or the compiler missing
            if not set(OPENMP) & set(ext.extra_compile_args):
                raise
            ext.extra_compile_args = [f for f in ext.extra_compile_args if f not in OPENMP]
            ext.extra_link_args = [f for f in ext.extra_link_args if f not in OPENMP]
            super().build_extension(ext)


setup(
    cmdclass={"build_ext": BuildExt},
    ext_modules=[
        Extension(
            "tensormagic.engine.tensorinfo.statistics._fused",
            ["tensormagic/engine/tensorinfo/statistics/_fused.c"],
            depends=[f"tensormagic/engine/tensorinfo/statistics/fused_{part}.h" for part in ("common", "float64", "narrow", "int", "histogram")],
            extra_compile_args=FLAGS + OPENMP,
            extra_link_args=["-pthread"] + OPENMP,
            optional=True,
        )
    ],
)
