# The two commands of the quickstart: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test native-test cuda-check bench clean

$(STAMP): requirements.txt setup.py $(wildcard csrc/*.cpp csrc/core/*.cpp csrc/core/*.h csrc/cuda/*.cu csrc/cuda/*.h)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-build-isolation --no-deps --use-pep517 -e .
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) -m dga_fast demo --out runs/demo

test: $(STAMP) native-test cuda-check
	$(PY) -m pytest -q -rs tests

# the torch-free C++ core of dga_fast._C with its unit tests, under AddressSanitizer + UBSan (ctest)
native-test:
	@command -v cmake >/dev/null || { echo "make test needs cmake and a C++17 compiler for csrc/ (apt-get install cmake g++)"; exit 1; }
	cmake -S csrc -B build/csrc -DCMAKE_BUILD_TYPE=Debug > /dev/null
	cmake --build build/csrc > /dev/null
	ctest --test-dir build/csrc --output-on-failure

# every .cu of csrc/ must compile. With a CUDA torch the extension build compiled them already; where nvcc exists
# but torch has no CUDA (a CPU-only machine) they are checked with `nvcc -c` (they are torch-free); without nvcc,
# there is nothing to check with (said, not hidden).
CU_SOURCES := $(wildcard csrc/cuda/*.cu)
cuda-check: $(STAMP)
	@if ! command -v nvcc >/dev/null; then echo "cuda-check: no nvcc on this machine, the .cu files were not compiled"; \
	elif $(PY) -c "import sys, torch; sys.exit(torch.version.cuda is None)"; then \
	  echo "cuda-check: torch has CUDA, the .cu files were compiled into dga_fast._C"; \
	else mkdir -p build/nvcc && for f in $(CU_SOURCES); do \
	  nvcc -c -std=c++17 -Icsrc -Werror all-warnings $$f -o build/nvcc/$$(basename $$f .cu).o || exit 1; \
	  echo "cuda-check: nvcc -c $$f ok"; done; fi

# gmm-gpu (the batched-GMM peer of the em rows) is optional; --no-deps: its metadata pins numpy < 2 and an
# unpinned torch, neither of which it needs here. diffusers (the U-Net peer of the step rows) is optional too
# and does not depend on torch
bench: $(STAMP)
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps gmm-gpu==0.2.8 || echo "bench: gmm-gpu not installed, its rows are skipped"
	$(PY) -m pip install --quiet --disable-pip-version-check diffusers==0.42.1 || echo "bench: diffusers not installed, its rows are skipped"
	$(PY) benchmarks/throughput.py

clean:
	rm -rf $(VENV) build *.egg-info runs .pytest_cache .hypothesis
