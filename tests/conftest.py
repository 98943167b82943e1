import os
import random
from pathlib import Path

import jax
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "strict")


@pytest.fixture
def getkey():
    """A function returning fresh keys. The seed is random unless DTP_EQX_TEST_SEED is set,
    and is printed, so that a failure can be replayed."""
    seed = int(os.environ.get("DTP_EQX_TEST_SEED") or random.randint(0, 2**31 - 1))
    print(f"getkey seed: {seed}")
    key = jax.random.key(seed)

    def _getkey():
        nonlocal key
        key, sub = jax.random.split(key)
        return sub

    return _getkey


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The folder of real datasets named by DTP_EQX_DATA; skips the test without it."""
    folder = os.environ.get("DTP_EQX_DATA")
    if not folder:
        pytest.skip("real-data test: set DTP_EQX_DATA to a folder with mnist.npz "
                    "(.ci/run uses ../shared/data)")
    path = Path(folder)
    if not (path / "mnist.npz").is_file():
        pytest.skip(f"real-data test: DTP_EQX_DATA={folder} holds no mnist.npz")
    return path


@pytest.fixture(autouse=True)
def no_download_cache(tmp_path_factory, monkeypatch):
    """Point the download cache at an empty temporary folder for every test."""
    monkeypatch.setenv("DTP_EQX_CACHE", str(tmp_path_factory.mktemp("cache")))
