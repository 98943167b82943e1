import gzip
import hashlib
import logging
from pathlib import Path

import numpy as np
import pytest

import dtp_eqx
from dtp_eqx import _data


def _write_npz(folder: Path, name: str, n_train=120, n_test=30, shape=(28, 28), seed=0, **extra):
    rng = np.random.default_rng(seed)
    arrays = {
        "x_train": rng.integers(0, 256, (n_train, *shape), dtype=np.uint8),
        "y_train": rng.integers(0, 10, n_train).astype(np.uint8),
        "x_test": rng.integers(0, 256, (n_test, *shape), dtype=np.uint8),
        "y_test": rng.integers(0, 10, n_test).astype(np.uint8),
        **extra,
    }
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / name, **arrays)
    return arrays


def _sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_local_npz_split_and_scaling(tmp_path):
    arrays = _write_npz(tmp_path, "mnist.npz")
    data = dtp_eqx.load_mnist(tmp_path, download=False, n_valid=20)
    assert data.x_train.shape == (100, 784) and data.x_valid.shape == (20, 784)
    assert data.x_test.shape == (30, 784)
    assert data.x_train.dtype == np.float32 and data.y_train.dtype == np.int32
    assert 0.0 <= data.x_train.min() and data.x_train.max() <= 1.0
    # validation is the *last* n_valid official training images
    np.testing.assert_allclose(data.x_valid[0], arrays["x_train"][100].reshape(-1) / 255.0)
    np.testing.assert_array_equal(data.y_valid, arrays["y_train"][100:])
    assert data.image_shape == (28, 28) and data.name == "MNIST" and not data.lossy
    assert "mnist.npz" in data.source


def test_take(tmp_path):
    _write_npz(tmp_path, "mnist.npz")
    data = dtp_eqx.load_mnist(tmp_path, download=False, n_valid=20).take(10, n_test=5)
    assert len(data.x_train) == 10 and len(data.x_valid) == 20 and len(data.x_test) == 5
    assert "train=10" in repr(data)


def test_environment_variable_then_cache(tmp_path, monkeypatch):
    env, cache = tmp_path / "env", tmp_path / "cache"
    _write_npz(cache, "fashion_mnist.npz", seed=1)
    monkeypatch.setenv("DTP_EQX_CACHE", str(cache))
    monkeypatch.delenv("DTP_EQX_DATA", raising=False)
    from_cache = dtp_eqx.load_fashion_mnist(download=False, n_valid=20)
    assert str(cache) in from_cache.source and from_cache.name == "Fashion-MNIST"
    _write_npz(env, "fashion_mnist.npz", seed=2)
    monkeypatch.setenv("DTP_EQX_DATA", str(env))
    from_env = dtp_eqx.load_fashion_mnist(download=False, n_valid=20)
    assert str(env) in from_env.source


def test_missing_data_names_folders_and_files(tmp_path, monkeypatch):
    monkeypatch.setenv("DTP_EQX_DATA", str(tmp_path / "nothing-here"))
    with pytest.raises(FileNotFoundError) as err:
        dtp_eqx.load_mnist(download=False)
    message = str(err.value)
    assert "No MNIST data found" in message
    assert "DTP_EQX_DATA: " + str(tmp_path / "nothing-here") in message
    assert "cache: " in message
    assert "mnist.npz" in message and "train-images-idx3-ubyte.gz" in message
    with pytest.raises(FileNotFoundError, match="data_dir: "):
        dtp_eqx.load_cifar10(tmp_path, download=False)


def test_bad_n_valid(tmp_path):
    _write_npz(tmp_path, "mnist.npz")
    with pytest.raises(ValueError, match=r"n_valid=120 must be an integer in \[0, 119\]"):
        dtp_eqx.load_mnist(tmp_path, download=False, n_valid=120)


def test_listed_checksum_is_verified(tmp_path):
    _write_npz(tmp_path, "mnist.npz")
    good = _sha256(tmp_path / "mnist.npz")
    (tmp_path / "SHA256SUMS").write_text(f"{good}  mnist.npz\n")
    dtp_eqx.load_mnist(tmp_path, download=False, n_valid=20)  # passes
    (tmp_path / "SHA256SUMS").write_text(f"{'0' * 64}  mnist.npz\n")
    with pytest.raises(dtp_eqx.ChecksumError, match="lists 0000"):
        dtp_eqx.load_mnist(tmp_path, download=False, n_valid=20)


def test_npz_missing_keys(tmp_path):
    np.savez(tmp_path / "mnist.npz", x_train=np.zeros((3, 28, 28), np.uint8))
    with pytest.raises(ValueError, match=r"lacks the arrays \['y_train', 'x_test', 'y_test'\]"):
        dtp_eqx.load_mnist(tmp_path, download=False)


def _idx_gz(path: Path, array: np.ndarray):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(n.to_bytes(4, "big") for n in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def official_mnist_files(tmp_path, monkeypatch):
    """Small idx .gz files laid out like the official ones, with their MD5s registered."""
    rng = np.random.default_rng(0)
    src = tmp_path / "server"
    src.mkdir()
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (50, 28, 28)),
        "train-labels-idx1-ubyte.gz": rng.integers(0, 10, 50),
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (20, 28, 28)),
        "t10k-labels-idx1-ubyte.gz": rng.integers(0, 10, 20),
    }
    md5 = {}
    for name, array in arrays.items():
        _idx_gz(src / name, array)
        md5[name] = hashlib.md5((src / name).read_bytes()).hexdigest()
    spec = dict(_data._SOURCES["mnist"], md5=md5, mirrors=(src.as_uri() + "/",))
    monkeypatch.setitem(_data._SOURCES, "mnist", spec)
    return src, arrays


def test_official_idx_files(tmp_path, official_mnist_files):
    src, arrays = official_mnist_files
    folder = tmp_path / "data" / "mnist"
    folder.mkdir(parents=True)
    for name in arrays:
        (folder / name).write_bytes((src / name).read_bytes())
    data = dtp_eqx.load_mnist(tmp_path / "data", download=False, n_valid=10)
    np.testing.assert_array_equal(data.y_train, arrays["train-labels-idx1-ubyte.gz"][:40])
    np.testing.assert_allclose(
        data.x_test[3], arrays["t10k-images-idx3-ubyte.gz"][3].reshape(-1) / 255.0
    )
    # a corrupted official file is caught by its MD5
    with gzip.open(folder / "t10k-labels-idx1-ubyte.gz", "wb") as f:
        f.write(b"not the official bytes")
    with pytest.raises(dtp_eqx.ChecksumError, match="expected the published"):
        dtp_eqx.load_mnist(tmp_path / "data", download=False, n_valid=10)


def test_download_verifies_and_lands_atomically(tmp_path, official_mnist_files):
    dest = tmp_path / "fresh"
    data = dtp_eqx.load_mnist(dest, n_valid=10)  # downloads from the file:// mirror
    assert data.x_train.shape == (40, 784)
    files = sorted(p.name for p in (dest / "mnist").iterdir())
    assert files == sorted(official_mnist_files[1])  # no temporary files left behind


def test_download_falls_back_to_the_next_mirror(tmp_path, official_mnist_files, monkeypatch):
    src, _ = official_mnist_files
    spec = dict(_data._SOURCES["mnist"], mirrors=((tmp_path / "gone").as_uri() + "/", src.as_uri() + "/"))
    monkeypatch.setitem(_data._SOURCES, "mnist", spec)
    assert dtp_eqx.load_mnist(tmp_path / "fresh", n_valid=10).x_test.shape == (20, 784)


def test_download_checksum_mismatch_leaves_nothing(tmp_path):
    src = tmp_path / "file.bin"
    src.write_bytes(b"some bytes")
    dest = tmp_path / "out" / "file.bin"
    with pytest.raises(OSError, match="downloaded with md5"):
        _data.download_file([src.as_uri()], dest, md5="0" * 32, progress=False)
    assert not (tmp_path / "out").exists()  # neither a .part file nor the folder made for it


def test_interrupted_download_leaves_nothing(tmp_path, monkeypatch):
    import urllib.request

    class Broken:
        headers = {"Content-Length": "100"}

        def __init__(self):
            self.calls = 0

        def read(self, n):
            self.calls += 1
            if self.calls > 1:
                raise KeyboardInterrupt  # the user pressed Ctrl-C mid-download
            return b"x" * 10

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: Broken())
    dest = tmp_path / "out" / "file.bin"
    with pytest.raises(KeyboardInterrupt):
        _data.download_file(["https://example.invalid/file.bin"], dest, md5="0" * 32, progress=False)
    assert not (tmp_path / "out").exists()


def test_no_network_gives_one_clear_error(tmp_path, monkeypatch):
    spec = dict(_data._SOURCES["mnist"], mirrors=((tmp_path / "offline").as_uri() + "/",))
    monkeypatch.setitem(_data._SOURCES, "mnist", spec)
    with pytest.raises(FileNotFoundError, match="(?s)No MNIST data found.*The download failed"):
        dtp_eqx.load_mnist(tmp_path / "empty")


def test_cifar_exact_npz_and_source_choice(tmp_path):
    _write_npz(tmp_path, "cifar10.npz", n_train=60, n_test=10, shape=(32, 32, 3))
    data = dtp_eqx.load_cifar10(tmp_path, download=False, n_valid=10)
    assert data.x_train.shape == (50, 3072) and data.image_shape == (32, 32, 3)
    assert data.name == "CIFAR-10" and not data.lossy
    with pytest.raises(FileNotFoundError, match="cifar10_jpeg_q75_bytes.npz"):
        dtp_eqx.load_cifar10(tmp_path, download=False, source="jpeg")
    with pytest.raises(ValueError, match="source='png'"):
        dtp_eqx.load_cifar10(tmp_path, source="png")


def test_cifar_jpeg_copy_is_flagged_lossy(tmp_path, caplog):
    import io

    from PIL import Image

    rng = np.random.default_rng(0)

    def encode(images):
        blobs = []
        for image in images:
            buf = io.BytesIO()
            Image.fromarray(image).save(buf, format="JPEG", quality=75)
            blobs.append(np.frombuffer(buf.getvalue(), np.uint8))
        offsets = np.cumsum([0] + [len(b) for b in blobs])
        return np.concatenate(blobs), offsets

    train = rng.integers(0, 256, (12, 32, 32, 3), dtype=np.uint8)
    test = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    train_jpeg, train_offsets = encode(train)
    test_jpeg, test_offsets = encode(test)
    np.savez(
        tmp_path / "cifar10_jpeg_q75_bytes.npz",
        train_jpeg=train_jpeg, train_offsets=train_offsets,
        test_jpeg=test_jpeg, test_offsets=test_offsets,
        y_train=np.arange(12) % 10, y_test=np.arange(4),
    )
    with caplog.at_level(logging.WARNING, logger="dtp_eqx"):
        data = dtp_eqx.load_cifar10(tmp_path, download=False, n_valid=2)
    assert data.lossy and data.name == "CIFAR-10 (JPEG q75 copy)"
    assert "lossy" in caplog.text
    assert data.x_train.shape == (10, 3072) and data.x_test.shape == (4, 3072)
    # decoded pixels are close to, not equal to, the originals
    err = np.abs(data.x_test[0] - test[0].reshape(-1) / 255.0).mean()
    assert 0 < err < 0.25


# Real data from DTP_EQX_DATA (../shared/data in CI).


def test_real_mnist(data_dir):
    data = dtp_eqx.load_mnist(data_dir, download=False)
    assert (len(data.x_train), len(data.x_valid), len(data.x_test)) == (50_000, 10_000, 10_000)
    assert data.x_train.shape[1] == 784 and data.x_train.max() == 1.0
    assert data.y_train[0] == 5 and data.y_test[0] == 7
    counts = np.bincount(np.concatenate([data.y_train, data.y_valid]), minlength=10)
    assert counts.tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


def test_real_fashion_mnist(data_dir):
    if not (data_dir / "fashion_mnist.npz").is_file():
        pytest.skip(f"real-data test: {data_dir} holds no fashion_mnist.npz")
    data = dtp_eqx.load_fashion_mnist(data_dir, download=False)
    assert data.x_test.shape == (10_000, 784)
    assert np.bincount(data.y_test).tolist() == [1000] * 10


def test_real_cifar10_exact_subset(data_dir):
    if not (data_dir / "cifar10_exact_subset.npz").is_file():
        pytest.skip(f"real-data test: {data_dir} holds no cifar10_exact_subset.npz")
    data = dtp_eqx.load_cifar10(data_dir, download=False, source="exact-subset", n_valid=500)
    assert data.x_train.shape == (1500, 3072) and data.x_test.shape == (1000, 3072)
    assert data.y_train[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]
    assert not data.lossy


def test_real_cifar10_jpeg_copy(data_dir):
    if not (data_dir / "cifar10_jpeg_q75_bytes.npz").is_file():
        pytest.skip(f"real-data test: {data_dir} holds no cifar10_jpeg_q75_bytes.npz")
    data = dtp_eqx.load_cifar10(data_dir, download=False, source="jpeg")
    assert data.lossy and "JPEG" in data.name
    assert (len(data.x_train), len(data.x_valid), len(data.x_test)) == (40_000, 10_000, 10_000)
    assert np.bincount(data.y_test).tolist() == [1000] * 10


def test_take_spread(tmp_path):
    _write_npz(tmp_path, "mnist.npz")
    data = dtp_eqx.load_mnist(tmp_path, download=False, n_valid=20)
    part = data.take(n_test=3, spread=True)
    np.testing.assert_array_equal(part.x_test, data.x_test[[0, 14, 29]])
    assert len(part.x_train) == 100


# Pixel scaling, n_valid=0, stalled downloads and corrupt files (issue 14, points 6 and 8).


def test_n_valid_zero_gives_an_empty_validation_split(tmp_path):
    _write_npz(tmp_path, "mnist.npz")
    data = dtp_eqx.load_mnist(tmp_path, download=False, n_valid=0)
    assert data.x_train.shape == (120, 784) and data.y_train.shape == (120,)
    assert data.x_valid.shape == (0, 784) and data.y_valid.shape == (0,)
    assert "valid=0" in repr(data)


def test_float_pixels_are_scaled_once(tmp_path):
    arrays = _write_npz(tmp_path / "uint8", "mnist.npz")
    unit = {k: (v.astype(np.float32) / 255 if k.startswith("x") else v) for k, v in arrays.items()}
    np.savez(tmp_path / "mnist.npz", **unit)  # float pixels already in [0, 1]
    data = dtp_eqx.load_mnist(tmp_path, download=False, n_valid=20)
    np.testing.assert_array_equal(data.x_train, unit["x_train"][:100].reshape(100, -1))
    np.testing.assert_array_equal(data.x_test, unit["x_test"].reshape(30, -1))
    reference = dtp_eqx.load_mnist(tmp_path / "uint8", download=False, n_valid=20)
    np.testing.assert_allclose(data.x_train, reference.x_train, rtol=1e-6)
    # float pixels in 0-255 are divided by 255, once
    np.savez(tmp_path / "mnist.npz", **{k: (v.astype(np.float32) if k.startswith("x") else v)
                                        for k, v in arrays.items()})
    again = dtp_eqx.load_mnist(tmp_path, download=False, n_valid=20)
    np.testing.assert_allclose(again.x_valid, reference.x_valid, rtol=1e-6)


def test_stalled_download_names_the_url_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    import socket
    import urllib.error
    import urllib.request

    class Stalls:
        headers = {"Content-Length": "100"}

        def read(self, n):
            raise socket.timeout("timed out")  # the server stops sending mid-file

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    def urlopen(url, timeout):
        assert timeout == getattr(_data, "DOWNLOAD_TIMEOUT", 60)
        if "first" in url:
            raise urllib.error.URLError(socket.timeout("timed out"))  # no connection
        return Stalls()

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    mirrors = ("https://first.invalid/", "https://second.invalid/")
    spec = dict(_data._SOURCES["mnist"], mirrors=mirrors)
    monkeypatch.setitem(_data._SOURCES, "mnist", spec)
    cache = tmp_path / "cache"  # does not exist yet
    monkeypatch.setenv("DTP_EQX_CACHE", str(cache))
    monkeypatch.delenv("DTP_EQX_DATA", raising=False)
    with pytest.raises(FileNotFoundError) as err:
        dtp_eqx.load_mnist()
    message = str(err.value)
    for mirror in spec["mirrors"]:
        assert f"{mirror}train-images-idx3-ubyte.gz: no data for 60 s" in message
    stderr = capsys.readouterr().err
    assert ("download of https://first.invalid/train-images-idx3-ubyte.gz failed: no data "
            "for 60 s (the server stalled or is unreachable); trying "
            "https://second.invalid/train-images-idx3-ubyte.gz") in stderr
    assert not cache.exists()  # no .part file and no empty cache folder


def test_stale_part_files_are_removed(tmp_path, official_mnist_files):
    import os
    import time

    folder = tmp_path / "fresh" / "mnist"
    folder.mkdir(parents=True)
    stale = folder / ".train-images-idx3-ubyte.gz.abc123.part"  # from a killed download
    stale.write_bytes(b"partial")
    old = time.time() - 2 * 3600
    os.utime(stale, (old, old))
    dtp_eqx.load_mnist(tmp_path / "fresh", n_valid=10)
    assert sorted(p.name for p in folder.iterdir()) == sorted(official_mnist_files[1])


@pytest.mark.parametrize("corrupt", ["truncated", "garbage"])
def test_corrupt_npz_names_the_file(corrupt, tmp_path):
    _write_npz(tmp_path, "mnist.npz")
    path = tmp_path / "mnist.npz"
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2] if corrupt == "truncated" else b"not an npz file" * 10)
    with pytest.raises(OSError, match=rf"{path} cannot be read as an .npz file .*corrupt or "
                                      r"truncated"):
        dtp_eqx.load_mnist(tmp_path, download=False)


def test_commit_is_that_of_the_package_repository(tmp_path, monkeypatch):
    """The recorded commit is the git commit of the repository holding dtp_eqx, not the
    current directory's (here another git repository)."""
    import subprocess

    from dtp_eqx._provenance import git_commit

    package = Path(dtp_eqx.__file__).parent

    def git(*args, cwd):
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)

    if git("ls-files", "--error-unmatch", "__init__.py", cwd=package).returncode:
        pytest.skip("dtp_eqx is not in a git checkout here")
    expected = git("rev-parse", "HEAD", cwd=package).stdout.strip()
    other = tmp_path / "other"
    other.mkdir()
    git("init", "-q", cwd=other)
    (other / "f").write_text("x")
    git("add", "f", cwd=other)
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "other", cwd=other)
    monkeypatch.chdir(other)
    assert git_commit().split("-")[0] == expected
    assert git_commit(tmp_path) == "unknown"  # a folder outside any checkout
