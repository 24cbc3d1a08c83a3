"""Build of ckconv's optional compiled kernels (ckconv/converters/_native.c); everything else
is in pyproject.toml. Without a C compiler the build goes on without them, and ckconv
computes the same bytes with numpy (ckconv/converters/kernels.py)."""

import sys

from setuptools import Extension, setup

FLAGS = [] if sys.platform == "win32" else ["-O3"]
setup(ext_modules=[Extension("ckconv.converters._native", ["ckconv/converters/_native.c"],
                             optional=True, extra_compile_args=FLAGS)])
