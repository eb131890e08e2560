import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from tiny_runs import tiny_config, tiny_data


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory) -> Path:
    """One feature cache (and synthetic corpus) for every tiny run of the session."""
    return tmp_path_factory.mktemp("tiny-cache")


@pytest.fixture(scope="session")
def tiny(tiny_cache):
    """(config, data) of the tiny run; tests must not modify the data in place."""
    config = tiny_config(tiny_cache)
    return config, tiny_data(config)
