# The two commands of the quickstart: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test native-test bench clean

$(STAMP): requirements.txt setup.py $(wildcard csrc/*.cpp csrc/core/*.cpp csrc/core/*.h)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-build-isolation --no-deps --use-pep517 -e .
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) -m dga_fast demo --out runs/demo

test: $(STAMP) native-test
	$(PY) -m pytest -q tests

# the torch-free C++ core of dga_fast._C with its unit tests, under AddressSanitizer + UBSan (ctest)
native-test:
	@command -v cmake >/dev/null || { echo "make test needs cmake and a C++17 compiler for csrc/ (apt-get install cmake g++)"; exit 1; }
	cmake -S csrc -B build/csrc -DCMAKE_BUILD_TYPE=Debug > /dev/null
	cmake --build build/csrc > /dev/null
	ctest --test-dir build/csrc --output-on-failure

bench: $(STAMP)
	$(PY) benchmarks/throughput.py

clean:
	rm -rf $(VENV) build *.egg-info runs .pytest_cache .hypothesis
