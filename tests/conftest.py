import os

# Triton kernels must see the interpreter flag before they are decorated: set it before anything imports
# dga_fast when no GPU is present.
try:
    import torch
    _has_cuda = torch.cuda.is_available()
except Exception:  # noqa: BLE001
    _has_cuda = False
if not _has_cuda:
    os.environ.setdefault("TRITON_INTERPRET", "1")

# every DyGA refit stage checks its own output (dga_fast.refit.check_stage) in the tests
os.environ.setdefault("DGA_FAST_CHECK_STAGES", "1")

from hypothesis import HealthCheck, settings  # noqa: E402

settings.register_profile("ci", derandomize=True, deadline=None, max_examples=25, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", deadline=None, max_examples=25,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci" if os.environ.get("CI") else os.environ.get("HYPOTHESIS_PROFILE", "dev"))


import contextlib  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture
def set_backend():
    """``set_backend(name)`` forces an ops backend (``dga_fast.use_backend``) until the test ends; calls nest."""
    from dga_fast import use_backend
    with contextlib.ExitStack() as stack:
        yield lambda name: stack.enter_context(use_backend(name))
