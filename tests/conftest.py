import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))
# One thread per process, here and in every command and Ray worker a test starts: the suite runs
# in two processes (make test's -n 2) on two cores, and a busy machine's third process turns
# spinning OpenMP threads into waits (an example beside two CPU-bound loops: 55 s at two threads,
# 23 s at one). The same count everywhere: a command killed at one thread count and resumed in
# process at another measures float32 blocks with other rounding, which the resume tests catch.
os.environ["OMP_NUM_THREADS"] = "1"
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def fresh_mode_choices():
    """product_mode=auto keeps its timings process-wide: every test starts without them."""
    from pipeline.curvature.mode_choice import forget_choices

    forget_choices()


def pytest_collection_modifyitems(config, items):
    """GPU tests are skipped without CUDA; tests using ``ray_session`` are marked ``ray``."""
    skip = None if torch.cuda.is_available() else pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if skip is not None and "gpu" in item.keywords:
            item.add_marker(skip)
        if "ray_session" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.ray)


@pytest.fixture(scope="session")
def ray_session(tmp_path_factory):
    """One local Ray instance for the whole session.

    One local Ray instance for the whole session (8 logical CPUs: workers mostly wait), files under
    a temp dir.
    """
    os.environ["RAY_AUTH_MODE"] = "disabled"
    import ray
    from ray import cloudpickle

    import helpers

    cloudpickle.register_pickle_by_value(helpers)  # workers cannot import the tests directory
    from pipeline.distributed.runtime import LOCAL_SYSTEM_CONFIG

    ray.init(
        num_cpus=8,
        include_dashboard=False,
        _temp_dir=str(tmp_path_factory.mktemp("ray")),
        log_to_driver=False,
        _system_config=LOCAL_SYSTEM_CONFIG,
    )
    yield ray
    ray.shutdown()
