"""Build script of dga_fast.

The Triton kernels live with their ops (``dga_fast/ops/<op>/triton.py``); the C++ extension ``dga_fast._C`` is
built from ``csrc/`` (a compiler error is shown as it comes).
Install with ``pip install --no-build-isolation --use-pep517 -e .`` after torch is installed (see the Makefile), so
pip never resolves an unpinned torch.
"""
import os

from setuptools import find_packages, setup


def _extensions():
    """dga_fast._C from csrc/: a CUDAExtension (CPU and CUDA kernels) when torch has CUDA and nvcc is found, else
    a CppExtension (CPU kernels). DGA_FAST_NO_CUDA=1 forces the CPU-only build; DGA_FAST_NO_EXT=1 skips the
    extension (the PyTorch references then serve every op).

    Build with the compiler whose runtime libraries (libgcc_s, libstdc++) the Python process loads, normally the
    system's: an extension linked by a separate toolchain (seen: CXX=/opt/gcc/bin/g++ on a GPU machine) loads
    and computes, but crashes the process the first time it raises an error. tests/test_native.py's fuzz test
    catches that; rebuild with CXX=/usr/bin/g++ CC=/usr/bin/gcc LDSHARED="/usr/bin/gcc -shared"."""
    if os.environ.get("DGA_FAST_NO_EXT") == "1":
        return [], {}
    import torch
    from torch.utils import cpp_extension as ce
    sources = ["csrc/ops.cpp", "csrc/estep_op.cpp", "csrc/moments_op.cpp", "csrc/mstep_op.cpp",
               "csrc/cem_op.cpp", "csrc/kmeans_op.cpp",
               "csrc/core/dyga_core.cpp", "csrc/core/estep_core.cpp", "csrc/core/mstep_core.cpp", "csrc/core/kmeans_core.cpp",
               "csrc/core/jacobi_core.cpp",
               "csrc/core/isa.cpp"]
    include_dirs = [os.path.abspath("csrc")]
    # -fopenmp: at::parallel_for is a header template that runs in parallel only when the code including it is
    # compiled with OpenMP (torch's own parallel backend); without it every native op ran on one thread
    cxx = ["-O2", "-fno-math-errno", "-std=c++17", "-fopenmp"]
    link = ["-fopenmp"]
    with_cuda = (torch.version.cuda is not None and ce.CUDA_HOME is not None
                 and os.environ.get("DGA_FAST_NO_CUDA") != "1")
    if with_cuda:
        ext = ce.CUDAExtension("dga_fast._C", sources + ["csrc/cuda/ops.cu"], include_dirs=include_dirs,
                               define_macros=[("DGA_FAST_WITH_CUDA", None)],
                               extra_compile_args={"cxx": cxx, "nvcc": ["-O3", "-std=c++17"]}, extra_link_args=link)
    else:
        ext = ce.CppExtension("dga_fast._C", sources, include_dirs=include_dirs, extra_compile_args=cxx,
                              extra_link_args=link)
    print(f"dga_fast: building dga_fast._C with {'CPU and CUDA' if with_cuda else 'CPU'} kernels")
    return [ext], {"build_ext": ce.BuildExtension.with_options(use_ninja=False)}


ext_modules, cmdclass = _extensions()

setup(
    name="dga_fast",
    version="0.1.0",
    description="Dynamic Gaussian Anchoring and Skip Dropout for diffusion-based disentangled "
                "representation learning: batched HDDC mixtures and fused kernels",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["dga_fast", "dga_fast.*"]),
    package_data={"dga_fast.explore": ["page.html"]},
    install_requires=["torch>=2.11", "numpy", "scipy", "scikit-learn>=1.6", "matplotlib", "tqdm",
                      "safetensors", "nvtx", "h5py", "pillow"],
    extras_require={"triton": ["triton>=3.6"], "test": ["pytest", "hypothesis"], "config": ["pyyaml"],
                    "tensorboard": ["tensorboard"], "fid": ["torchmetrics", "torch-fidelity"],
                    "plots": ["pacmap", "umap-learn"], "explore": ["starlette", "uvicorn"]},
    entry_points={"console_scripts": ["dga-fast=dga_fast.cli:main"]},
    ext_modules=ext_modules,
    cmdclass=cmdclass,
)
