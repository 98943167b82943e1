"""Datasets: MNIST, Fashion-MNIST and CIFAR-10 as float32 arrays in [0, 1], with the paper's split.

Where the files are looked for, in order: the `data_dir` argument (alone, when given),
else the folder named by the `DTP_EQX_DATA` environment variable, then the user cache
directory (`DTP_EQX_CACHE`, or the platform's cache folder). When nothing is found and
`download=True`, the official files are downloaded (with checksum verification and an
atomic rename, so an interrupted download leaves nothing that looks complete) into
`data_dir` or the cache directory.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import logging
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

logger = logging.getLogger("dtp_eqx")


class ChecksumError(OSError):
    """A data file's checksum differs from the published (or listed) one."""


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """Train / validation / test splits as flat float32 images and int32 labels.

    Attributes:
        x_train: shape `(n_train, n_features)`, values in [0, 1]; y_train: `(n_train,)`
            integer labels (None for unlabelled data, enough to train an auto-encoder).
        x_valid, y_valid: the validation split (the last `n_valid` official training
            images; empty arrays, shape `(0, n_features)` and `(0,)`, for `n_valid=0`),
            or None.
        x_test, y_test: the official test split, or None.
        name: a human-readable name, e.g. `"MNIST"` or `"CIFAR-10 (JPEG q75 copy)"`.
        image_shape: shape of one image, e.g. `(28, 28)` or `(32, 32, 3)`, for plotting.
        n_classes: number of classes.
        source: the file(s) the arrays were read from.
        lossy: True when the pixels are not the original ones (the JPEG CIFAR-10 copy).
    """

    x_train: np.ndarray
    y_train: np.ndarray | None
    x_valid: np.ndarray | None = None
    y_valid: np.ndarray | None = None
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    name: str = "custom"
    image_shape: tuple[int, ...] = ()
    n_classes: int = 10
    source: str = ""
    lossy: bool = False

    def take(
        self,
        n_train: int | np.integer | None = None,
        n_valid: int | np.integer | None = None,
        n_test: int | np.integer | None = None,
        *,
        spread: bool = False,
    ) -> Dataset:
        """`n_*` examples of each split (None keeps a split whole): the first ones, or with
        `spread=True` evenly spaced ones (for files sorted by class, such as the JPEG
        CIFAR-10 copy's test set)."""

        def head(a, n):
            if a is None or n is None:
                return a
            if spread and n < len(a):
                return a[np.linspace(0, len(a) - 1, n).astype(int)]
            return a[:n]

        return dataclasses.replace(
            self,
            x_train=head(self.x_train, n_train),
            y_train=head(self.y_train, n_train),
            x_valid=head(self.x_valid, n_valid),
            y_valid=head(self.y_valid, n_valid),
            x_test=head(self.x_test, n_test),
            y_test=head(self.y_test, n_test),
        )

    def __repr__(self) -> str:
        sizes = ", ".join(
            f"{split}={0 if x is None else len(x)}"
            for split, x in (("train", self.x_train), ("valid", self.x_valid), ("test", self.x_test))
        )
        lossy = ", lossy" if self.lossy else ""
        return f"Dataset({self.name!r}, {sizes}, image_shape={self.image_shape}{lossy})"


# Official files, mirrors and published MD5 checksums.
_MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
_SOURCES = {
    "mnist": {
        "title": "MNIST",
        "npz": "mnist.npz",
        "mirrors": (
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
        ),
        "md5": {
            "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        },
    },
    "fashion_mnist": {
        "title": "Fashion-MNIST",
        "npz": "fashion_mnist.npz",
        "mirrors": (
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
        ),
        "md5": {
            "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
        },
    },
}
_CIFAR_ARCHIVE = "cifar-10-python.tar.gz"
_CIFAR_URLS = ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",)
_CIFAR_MD5 = "c58f30108f718f92721af3b95e74349a"
_CIFAR_NPZ = {
    "exact": "cifar10.npz",
    "jpeg": "cifar10_jpeg_q75_bytes.npz",
    "exact-subset": "cifar10_exact_subset.npz",
}
CIFAR10_SOURCES = ("auto", "official", "exact", "jpeg", "exact-subset")
"""Which CIFAR-10 copy `load_cifar10` reads; `"auto"` prefers lossless copies."""


def cache_dir() -> Path:
    """The user cache folder for downloads: `$DTP_EQX_CACHE`, else the platform's cache dir."""
    if os.environ.get("DTP_EQX_CACHE"):
        return Path(os.environ["DTP_EQX_CACHE"]).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "dtp_eqx"


def _folders(data_dir) -> list[tuple[str, Path]]:
    """Candidate folders with a description of where each came from."""
    if data_dir is not None:
        return [("data_dir", Path(data_dir).expanduser())]
    folders = []
    if os.environ.get("DTP_EQX_DATA"):
        folders.append(("DTP_EQX_DATA", Path(os.environ["DTP_EQX_DATA"]).expanduser()))
    folders.append(("cache", cache_dir()))
    return folders


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest of a file, read in 1 MiB blocks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_listed_sha256(path: Path) -> None:
    """Verify `path` against a `SHA256SUMS` file beside it, when that file lists it."""
    sums = path.parent / "SHA256SUMS"
    if not sums.is_file():
        return
    for line in sums.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("*") == path.name:
            actual = file_digest(path, "sha256")
            if actual != parts[0].lower():
                raise ChecksumError(
                    f"{path} has sha256 {actual}, but {sums} lists {parts[0]}: the file "
                    "is corrupt or was changed. Replace it with a good copy."
                )
            return


def _check_md5(path: Path, expected: str) -> None:
    actual = file_digest(path, "md5")
    if actual != expected:
        raise ChecksumError(
            f"{path} has md5 {actual}, expected the published {expected}: the file is "
            "corrupt or not the official one. Delete it to download it again."
        )


DOWNLOAD_TIMEOUT = 60.0
"""Seconds `download_file` waits for a server to connect or to send more bytes."""
_STALE_PART_SECONDS = 3600.0


def _missing_folders(folder: Path) -> list[Path]:
    """`folder` and those of its parents that do not exist yet, deepest first."""
    missing = []
    while not folder.exists() and folder.parent != folder:
        missing.append(folder)
        folder = folder.parent
    return missing


def _remove_stale_parts(dest: Path) -> None:
    """Delete temporary files of `dest` left by a download that was killed (a crash or
    a kill signal, which no `finally` sees): untouched for an hour, far longer than a
    live download, which writes every few seconds or fails after `DOWNLOAD_TIMEOUT`."""
    import time

    for part in dest.parent.glob(f".{dest.name}.*.part"):
        try:
            if time.time() - part.stat().st_mtime > _STALE_PART_SECONDS:
                part.unlink()
        except OSError:
            pass


def download_file(
    urls, dest: Path, *, md5: str, progress: bool = True, timeout: float | None = None
) -> Path:
    """Download the first reachable of `urls` to `dest`, verifying its MD5.

    The bytes go to a temporary `.part` file in `dest`'s folder, which is renamed to
    `dest` only after the checksum matches; on any failure or interruption it is
    removed, and so are the folders this call created, when they are left empty. A
    server that connects or sends nothing for `timeout` seconds (default
    `DOWNLOAD_TIMEOUT`) counts as failed; each failure is reported on stderr with its
    URL, and the next URL is tried.

    Raises:
        OSError: when no URL could be downloaded, naming each URL and why it failed (a
            stall, a network error, or a wrong checksum).
    """
    import socket
    import urllib.request

    from tqdm.auto import tqdm

    timeout = DOWNLOAD_TIMEOUT if timeout is None else timeout
    dest = Path(dest)
    created = _missing_folders(dest.parent)
    dest.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_parts(dest)
    urls = list(urls)
    errors = []
    try:
        for i, url in enumerate(urls):
            tmp = None
            try:
                with urllib.request.urlopen(url, timeout=timeout) as resp:
                    fd, tmp = tempfile.mkstemp(
                        dir=dest.parent, prefix=f".{dest.name}.", suffix=".part"
                    )
                    digest = hashlib.md5()
                    total = int(resp.headers.get("Content-Length") or 0) or None
                    with os.fdopen(fd, "wb") as out, tqdm(
                        total=total, unit="B", unit_scale=True, desc=dest.name,
                        disable=not progress,
                    ) as bar:
                        for block in iter(lambda: resp.read(1 << 16), b""):
                            out.write(block)
                            digest.update(block)
                            bar.update(len(block))
                if digest.hexdigest() != md5:
                    raise ChecksumError(
                        f"downloaded with md5 {digest.hexdigest()}, expected {md5}"
                    )
                os.replace(tmp, dest)
                return dest
            except (OSError, ValueError) as err:  # URLError and ChecksumError are OSErrors
                reason = getattr(err, "reason", err)
                if isinstance(reason, (socket.timeout, TimeoutError)):
                    why = f"no data for {timeout:g} s (the server stalled or is unreachable)"
                else:
                    why = str(err) or type(err).__name__
                errors.append(f"{url}: {why}")
                then = f"; trying {urls[i + 1]}" if i + 1 < len(urls) else ""
                print(f"dtp_eqx: download of {url} failed: {why}{then}", file=sys.stderr)
            finally:
                if tmp is not None and os.path.exists(tmp):
                    os.remove(tmp)
        raise OSError(f"could not download {dest.name}:\n  " + "\n  ".join(errors))
    except BaseException:
        for folder in created:  # deepest first; a folder holding anything stays
            try:
                folder.rmdir()
            except OSError:
                break
        raise


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _read_npz(path: Path, keys=("x_train", "y_train", "x_test", "y_test")) -> dict:
    """The arrays of an `.npz` file, checked against a `SHA256SUMS` beside it if listed.

    Raises:
        ChecksumError: the file's sha256 differs from the listed one.
        OSError: the file cannot be read as an `.npz` (corrupt or truncated), naming it.
        ValueError: the file lacks some of `keys`.
    """
    import zipfile
    import zlib

    _check_listed_sha256(path)
    try:
        with open(path, "rb") as file, np.load(file) as f:
            missing = [k for k in keys if k not in f]
            arrays = {} if missing else {k: f[k] for k in f.files}
    except PermissionError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError) as err:
        raise OSError(
            f"{path} cannot be read as an .npz file ({type(err).__name__}: {err}): it is "
            "corrupt or truncated. Replace it with a good copy (or delete it to "
            "download the official files)."
        ) from err
    if missing:
        raise ValueError(f"{path} lacks the arrays {missing}; expected keys {list(keys)}.")
    return arrays


def _find_mnist_like(spec: dict, folder: Path, subdir: str):
    npz = folder / spec["npz"]
    if npz.is_file():
        return _read_npz(npz), str(npz)
    gz = folder / subdir
    if all((gz / name).is_file() for name in spec["md5"]):
        for name, md5 in spec["md5"].items():
            _check_md5(gz / name, md5)
        arrays = {
            key: _read_idx(gz / _MNIST_FILES[part])
            for key, part in (
                ("x_train", "train_images"),
                ("y_train", "train_labels"),
                ("x_test", "test_images"),
                ("y_test", "test_labels"),
            )
        }
        return arrays, str(gz)
    return None


def _not_found(title: str, folders, wanted: str, error: str = "") -> FileNotFoundError:
    looked = "\n  ".join(f"{origin}: {path}" for origin, path in folders)
    why = f"\nThe download failed: {error}" if error else ""
    return FileNotFoundError(
        f"No {title} data found. Looked in\n  {looked}\nPut {wanted} in one of these "
        f"folders (or point DTP_EQX_DATA at a folder holding them), or pass "
        f"download=True with network access.{why}"
    )


def _unit_pixels(x, what: str) -> np.ndarray:
    """Images `x` as flat float32 rows in [0, 1], shape `(n, n_features)`.

    Integer pixels (0-255) and float pixels in [0, 255] are divided by 255; float pixels
    already in [0, 1] are kept as they are (never divided a second time).
    """
    x = np.asarray(x)
    flat = x.reshape(len(x), int(np.prod(x.shape[1:], dtype=np.int64)))
    if flat.size == 0:
        return flat.astype(np.float32)
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)
            or x.dtype == np.bool_):
        raise ValueError(f"{what} has dtype {x.dtype}; expected integer or float pixels.")
    lo, hi = float(flat.min()), float(flat.max())
    if not (np.isfinite(lo) and np.isfinite(hi) and lo >= 0 and hi <= 255):
        raise ValueError(
            f"{what} ranges over [{lo:g}, {hi:g}]; expected pixels in 0..255 (integers) "
            "or floats in [0, 1] (or in [0, 255])."
        )
    pixels = flat.astype(np.float32)
    if not (np.issubdtype(x.dtype, np.floating) and hi <= 1):  # else already in [0, 1]
        pixels /= np.float32(255)
    return pixels


def _make_dataset(arrays: dict, *, n_valid: int | np.integer, **info) -> Dataset:
    x_train, y_train = arrays["x_train"], arrays["y_train"]
    n = len(x_train)
    if not (isinstance(n_valid, (int, np.integer)) and not isinstance(n_valid, bool)
            and 0 <= n_valid < n):
        raise ValueError(
            f"n_valid={n_valid!r} must be an integer in [0, {n - 1}] "
            f"(the file has {n} training images)."
        )
    n_valid = int(n_valid)
    image_shape = tuple(x_train.shape[1:])
    source = info.get("source") or "the file"

    def labels(y):
        return np.asarray(y, np.int32).reshape(-1)

    # The whole training set is scaled at once, so train and validation agree.
    x_train = _unit_pixels(x_train, f"x_train of {source}")
    cut = n - n_valid
    return Dataset(
        x_train=x_train[:cut],
        y_train=labels(y_train[:cut]),
        x_valid=x_train[cut:],
        y_valid=labels(y_train[cut:]),
        x_test=_unit_pixels(arrays["x_test"], f"x_test of {source}"),
        y_test=labels(arrays["y_test"]),
        image_shape=image_shape,
        **info,
    )


def _load_mnist_like(
    name: str, data_dir, download_ok: bool, n_valid: int | np.integer
) -> Dataset:
    spec = _SOURCES[name]
    folders = _folders(data_dir)
    for _, folder in folders:
        found = _find_mnist_like(spec, folder, name)
        if found:
            break
    else:
        wanted = f"{spec['npz']} (keys x_train, y_train, x_test, y_test) or the official " + (
            ", ".join(spec["md5"]) + f" in a subfolder {name}/"
        )
        if not download_ok:
            raise _not_found(spec["title"], folders, wanted)
        dest = folders[0][1] if data_dir is not None else cache_dir()
        try:
            for file, md5 in spec["md5"].items():
                download_file([m + file for m in spec["mirrors"]], dest / name / file, md5=md5)
        except OSError as err:
            raise _not_found(spec["title"], folders, wanted, str(err)) from err
        found = _find_mnist_like(spec, dest, name)
    arrays, source = found
    return _make_dataset(arrays, n_valid=n_valid, name=spec["title"], source=source)


def load_mnist(
    data_dir=None, *, download: bool = True, n_valid: int | np.integer = 10_000
) -> Dataset:
    """MNIST with the paper's split: 50,000 train, 10,000 validation, 10,000 test.

    Reads `mnist.npz` (uint8 arrays `x_train (60000, 28, 28)`, `y_train`, `x_test`,
    `y_test`; checked against a `SHA256SUMS` file beside it when there is one) or the
    four official `.gz` files in a subfolder `mnist/` (checked against their published
    MD5s). See the module docstring for where it looks and when it downloads.

    Args:
        data_dir: a folder to read from (and download into); None searches
            `DTP_EQX_DATA`, then the cache directory.
        download: download the official files when none are found (keyword-only).
        n_valid: how many of the last official training images form the validation
            split, in `[0, n_train)`; 0 gives empty validation arrays of shape `(0, 784)`
            (keyword-only).

    Returns:
        A `Dataset` with `x_*` of shape `(n, 784)` in [0, 1] and `y_*` of shape `(n,)`.
        Integer (0-255) pixels are divided by 255; float pixels already in [0, 1] are
        kept as they are.

    Raises:
        FileNotFoundError: no data found (and no download, or a failed one: the message
            then names each URL tried and why it failed), naming the folders searched
            and the files expected.
        ChecksumError: a file does not match its checksum.
        OSError: a file that cannot be read (a corrupt or truncated `.npz`), named.
        ValueError: an `n_valid` out of range, or pixels outside 0..255.

    Example:
        >>> data = dtp_eqx.load_mnist("../shared/data", download=False)
        >>> data.x_train.shape, data.x_valid.shape, data.x_test.shape
        ((50000, 784), (10000, 784), (10000, 784))
    """
    return _load_mnist_like("mnist", data_dir, download, n_valid)


def load_fashion_mnist(
    data_dir=None, *, download: bool = True, n_valid: int | np.integer = 10_000
) -> Dataset:
    """Fashion-MNIST with the same 50,000 / 10,000 / 10,000 split as `load_mnist`.

    Reads `fashion_mnist.npz` (same keys as `mnist.npz`) or the four official `.gz`
    files in a subfolder `fashion_mnist/` (MD5-checked), searching and downloading like
    `load_mnist`.

    Args:
        data_dir: a folder to read from (and download into), or None.
        download: download the official files when none are found (keyword-only).
        n_valid: size of the validation split, cut from the end of the official
            training set (keyword-only).

    Returns:
        A `Dataset` with `x_*` of shape `(n, 784)` in [0, 1] and `y_*` of shape `(n,)`.

    Example:
        >>> data = dtp_eqx.load_fashion_mnist("../shared/data", download=False)
        >>> data.x_train.shape
        (50000, 784)
    """
    return _load_mnist_like("fashion_mnist", data_dir, download, n_valid)


def _read_cifar_archive(path: Path) -> dict:
    import pickle
    import tarfile

    _check_md5(path, _CIFAR_MD5)
    parts = {}
    with tarfile.open(path, "r:gz") as tar:
        for member in tar.getmembers():
            base = member.name.rsplit("/", 1)[-1]
            if base.startswith("data_batch_") or base == "test_batch":
                batch = pickle.load(tar.extractfile(member), encoding="bytes")
                x = batch[b"data"].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
                parts[base] = (x, np.asarray(batch[b"labels"], np.uint8))
    train = [parts[f"data_batch_{i}"] for i in range(1, 6)]
    return {
        "x_train": np.concatenate([x for x, _ in train]),
        "y_train": np.concatenate([y for _, y in train]),
        "x_test": parts["test_batch"][0],
        "y_test": parts["test_batch"][1],
    }


def _read_cifar_jpeg(path: Path) -> dict:
    from PIL import Image

    keys = ("train_jpeg", "train_offsets", "test_jpeg", "test_offsets", "y_train", "y_test")
    f = _read_npz(path, keys)

    def decode(data, offsets):
        return np.stack(
            [
                np.asarray(Image.open(io.BytesIO(data[a:b].tobytes())).convert("RGB"))
                for a, b in zip(offsets[:-1], offsets[1:])
            ]
        )

    return {
        "x_train": decode(f["train_jpeg"], f["train_offsets"]),
        "y_train": f["y_train"],
        "x_test": decode(f["test_jpeg"], f["test_offsets"]),
        "y_test": f["y_test"],
    }


def load_cifar10(
    data_dir=None,
    *,
    download: bool = True,
    n_valid: int | np.integer = 10_000,
    source: str = "auto",
) -> Dataset:
    """CIFAR-10 with the paper's split (40,000 / 10,000 / 10,000), images flattened.

    Copies it can read from a folder, in the order `"auto"` tries them:
    `"official"`: `cifar-10-python.tar.gz` (MD5-checked); `"exact"`: `cifar10.npz`
    (uint8 `x_train (50000, 32, 32, 3)`, `y_train`, `x_test`, `y_test`); `"jpeg"`:
    `cifar10_jpeg_q75_bytes.npz`, a **lossy** JPEG quality-75 copy (the returned
    dataset says so in `name` and `lossy`, and a warning is logged). The lossless
    `"exact-subset"` (`cifar10_exact_subset.npz`, 2,000 / 1,000 images) is read only
    when asked for by name; pass a smaller `n_valid` with it.

    Args:
        data_dir: a folder to read from (and download into); None searches
            `DTP_EQX_DATA`, then the cache directory.
        download: download the official archive when nothing is found (keyword-only).
        n_valid: validation images taken from the end of the training set (keyword-only).
        source: one of `dtp_eqx.CIFAR10_SOURCES` (keyword-only).

    Returns:
        A `Dataset` with `x_*` of shape `(n, 3072)` (32 x 32 x 3, channels last) in [0, 1].
    """
    if source not in CIFAR10_SOURCES:
        raise ValueError(f"source={source!r} is not supported; expected one of {CIFAR10_SOURCES}.")
    order = ("official", "exact", "jpeg") if source == "auto" else (source,)
    files = {"official": _CIFAR_ARCHIVE, **_CIFAR_NPZ}
    readers = {
        "official": _read_cifar_archive,
        "exact": _read_npz,
        "exact-subset": _read_npz,
        "jpeg": _read_cifar_jpeg,
    }
    folders = _folders(data_dir)
    found = next(
        ((kind, folder / files[kind]) for _, folder in folders for kind in order
         if (folder / files[kind]).is_file()),
        None,
    )
    if found is None:
        wanted = " or ".join(files[kind] for kind in order)
        if not (download and "official" in order):
            raise _not_found("CIFAR-10", folders, wanted)
        dest = (folders[0][1] if data_dir is not None else cache_dir()) / _CIFAR_ARCHIVE
        try:
            download_file(_CIFAR_URLS, dest, md5=_CIFAR_MD5)
        except OSError as err:
            raise _not_found("CIFAR-10", folders, wanted, str(err)) from err
        found = ("official", dest)
    kind, path = found
    lossy = kind == "jpeg"
    name = {"jpeg": "CIFAR-10 (JPEG q75 copy)", "exact-subset": "CIFAR-10 (exact subset)"}.get(
        kind, "CIFAR-10"
    )
    if lossy:
        logger.warning(
            "Loading the lossy JPEG (quality 75) copy of CIFAR-10 from %s: label any "
            "result 'CIFAR-10 (JPEG q75 copy)'.", path
        )
    arrays = readers[kind](path)
    return _make_dataset(
        arrays, n_valid=n_valid, name=name, source=str(path), lossy=lossy, n_classes=10
    )
