"""Build script of dga_fast.

The Triton kernels in ``kernels/`` are installed as the subpackage ``dga_fast.kernels``. The C++/CUDA
extension ``dga_fast._C`` (csrc/) is added by a later step; ``ext_modules`` below is where it plugs in.
Install with ``pip install --no-build-isolation -e .`` after torch is installed (see the Makefile), so
pip never resolves an unpinned torch.
"""
from setuptools import find_packages, setup

ext_modules = []   # dga_fast._C (CppExtension / CUDAExtension) goes here
cmdclass = {}

setup(
    name="dga_fast",
    version="0.1.0",
    description="Dynamic Gaussian Anchoring and Skip Dropout for diffusion-based disentangled "
                "representation learning: batched HDDC mixtures and fused kernels",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["dga_fast", "dga_fast.*"]) + ["dga_fast.kernels"],
    package_dir={"dga_fast.kernels": "kernels"},
    install_requires=["torch>=2.11", "numpy", "scipy", "scikit-learn>=1.6", "matplotlib", "tqdm",
                      "safetensors", "nvtx", "h5py", "pillow"],
    extras_require={"triton": ["triton>=3.6"], "test": ["pytest", "hypothesis"]},
    entry_points={"console_scripts": ["dga-fast=dga_fast.cli:main"]},
    ext_modules=ext_modules,
    cmdclass=cmdclass,
)
