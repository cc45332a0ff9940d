"""The row families of ``benchmarks/throughput.py`` (one module each) and their harness (``harness.py``)."""
