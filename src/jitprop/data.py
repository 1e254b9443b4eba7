"""MNIST: its facts (sizes, classes, normalization) in one place; the four IDX files read
(gzipped or not) with every header checked; and their download from configured https mirrors
with MD5 verification, never leaving a partial file."""

import gzip
import hashlib
from pathlib import Path

import numpy as np

from jitprop import checks
from jitprop.io import atomic_path

__all__ = ["DataError", "download_mnist", "load_mnist", "load_split"]

# Canonical release: decompressed MD5s identify the data whatever the compression.
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
GZ_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
DECOMPRESSED_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
IMAGE_MAGIC, LABEL_MAGIC = 0x00000803, 0x00000801

# MNIST's facts: images of SIDE x SIDE uint8 pixels (PIXELS in a row, as the MLP reads them;
# IMAGE, one channel, as the CNN does), CLASSES digits, TRAIN_SIZE and TEST_SIZE of them.
SIDE = 28
PIXELS = SIDE * SIDE
IMAGE = (1, SIDE, SIDE)
CLASSES = 10
TRAIN_SIZE, TEST_SIZE = 60_000, 10_000
# The CNN's inputs are scaled to [0, 1] and normalized with the training set's mean and
# standard deviation, as the reference CNNs do.
MEAN, STD = 0.1307, 0.3081


class DataError(ValueError):
    """A data file is missing, corrupt or not what was expected; the message names the file."""


def choose_file(data_dir, stem):
    """The file of `stem` a run reads from data_dir: `stem.gz` if present (as downloaded), else
    `stem` if present (a user's decompressed copy), else `stem.gz` (still to be downloaded).
    The workflow tracks the file this names, and the run reads that very file."""
    gz, plain = Path(data_dir) / f"{stem}.gz", Path(data_dir) / stem
    return plain if plain.is_file() and not gz.is_file() else gz


def mnist_paths(data_dir):
    """The four files of MNIST in data_dir as choose_file names them, in the order of FILES."""
    return [choose_file(data_dir, stem) for stem in FILES.values()]


def find_file(data_dir, stem):
    """The path of `stem` or `stem.gz` in data_dir (see choose_file); DataError if neither."""
    path = choose_file(data_dir, stem)
    if not path.is_file():
        raise DataError(
            f"{Path(data_dir) / stem}[.gz]: file not found; expected the MNIST file "
            f"{stem} (gzipped or not) in data_dir {str(data_dir)!r}"
        )
    return path


def _read_bytes(path):
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError) as error:
            raise DataError(f"{path}: corrupt or truncated gzip data ({error})") from None
    return raw


def read_idx(path, magic, expected_md5=None):
    """Read one IDX file into a uint8 array, checking magic, dimensions and size, and the MD5 of
    its decompressed bytes when `expected_md5` is given."""
    data = _read_bytes(path)
    ndim = {IMAGE_MAGIC: 3, LABEL_MAGIC: 1}[magic]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path}: truncated: {len(data)} bytes, expected a {header}-byte header")
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        raise DataError(
            f"{path}: wrong magic number 0x{found:08x}, expected 0x{magic:08x} "
            f"({'images' if magic == IMAGE_MAGIC else 'labels'})"
        )
    shape = tuple(int.from_bytes(data[4 + 4 * k : 8 + 4 * k], "big") for k in range(ndim))
    if ndim == 3 and shape[1:] != (SIDE, SIDE):
        raise DataError(f"{path}: images of {shape[1]}x{shape[2]} pixels, expected {SIDE}x{SIDE}")
    expected = header + int(np.prod(shape))
    if len(data) != expected:
        raise DataError(
            f"{path}: {len(data)} bytes, expected {expected} for shape {shape} "
            "(truncated or padded file)"
        )
    if expected_md5 is not None:
        found_md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
        if found_md5 != expected_md5:
            raise DataError(
                f"{path}: decompressed MD5 {found_md5}, expected {expected_md5} "
                "(the canonical MNIST file)"
            )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def load_split(data_dir, split, limit=None, verify=True):
    """Images (N, 784) uint8 and labels (N,) uint8 of the 'train' or 'test' split; only the
    first `limit` samples when given.  Pixels stay uint8 to keep memory low: scale per batch.
    With `verify`, each file must match the canonical MNIST MD5."""
    if split not in ("train", "test"):
        raise ValueError(f"split: expected 'train' or 'test', found {split!r}")
    if limit is not None and (not checks.whole_number(limit) or limit < 1):
        raise ValueError(f"limit: expected a whole number >= 1 (or None for all), found {limit!r}")
    stems = FILES[f"{split}_images"], FILES[f"{split}_labels"]
    images_path, labels_path = (find_file(data_dir, stem) for stem in stems)
    images = read_idx(images_path, IMAGE_MAGIC, DECOMPRESSED_MD5[stems[0]] if verify else None)
    labels = read_idx(labels_path, LABEL_MAGIC, DECOMPRESSED_MD5[stems[1]] if verify else None)
    if len(images) != len(labels):
        raise DataError(
            f"{images_path} holds {len(images)} images but {labels_path} holds "
            f"{len(labels)} labels; expected equal counts"
        )
    if labels.size and labels.max() >= CLASSES:
        raise DataError(f"{labels_path}: label {labels.max()} found, expected 0..{CLASSES - 1}")
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    return images.reshape(len(images), PIXELS), labels


def load_mnist(data_dir, train_size=None, test_size=None):
    """(train_images, train_labels, test_images, test_labels) from data_dir."""
    return (*load_split(data_dir, "train", train_size), *load_split(data_dir, "test", test_size))


def md5(path):
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_mnist(dest_dir, mirrors, opener=None, timeout=60):
    """Fetch the four gzipped MNIST files into dest_dir, trying each https mirror in order;
    `opener` opens a URL (urllib.request.urlopen by default).

    A file already present with the right MD5 is kept; every download is verified before it is
    renamed into place, so a failure leaves no partial or unverified file behind."""
    import http.client  # here: the rest of the module needs no network library
    import urllib.request

    opener = opener or urllib.request.urlopen
    if isinstance(mirrors, str) or not mirrors or not all(isinstance(m, str) for m in mirrors):
        raise DataError(f"mirrors: expected a list of https base URLs, found {mirrors!r}")
    dest_dir = Path(dest_dir)
    for name, expected in GZ_MD5.items():
        target = dest_dir / name
        if target.is_file() and md5(target) == expected:
            continue
        failures = []
        for mirror in mirrors:
            if not mirror.startswith("https://") or not mirror.endswith("/"):
                failures.append(f"{mirror}: expected an https base URL ending with /")
                continue
            url = mirror + name
            try:
                with atomic_path(target) as tmp:
                    with opener(url, timeout=timeout) as response, open(tmp, "wb") as out:
                        for block in iter(lambda r=response: r.read(1 << 20), b""):
                            out.write(block)
                    found = md5(tmp)
                    if found != expected:
                        raise DataError(f"{url}: MD5 {found}, expected {expected}")
                break
            # One mirror's failure, and the next is tried: OSError (URLError too), a broken
            # response (HTTPException: IncompleteRead), ValueError (a malformed URL; a wrong
            # MD5, DataError).
            except (OSError, http.client.HTTPException, ValueError) as error:
                failures.append(f"{url}: {error}")
        else:
            raise DataError(
                f"could not download {name} into {dest_dir}; tried:\n  "
                + "\n  ".join(failures)
                + "\n(offline? set mlp.data_dir and cnn.data_dir, or --data-dir, to a directory"
                " holding the files)"
            )
