"""MNIST IDX reading and downloading: real files, small files the tests write, and corrupt ones."""

import gzip
import http.client
import io
import shutil
import urllib.error

import numpy as np
import pytest

from jitprop import data


def write_idx(path, magic, shape, payload=None, compress=False):
    header = magic.to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in shape)
    if payload is None:
        payload = (np.arange(int(np.prod(shape))) % 256).astype(np.uint8).tobytes()
    raw = header + payload
    path.write_bytes(gzip.compress(raw, mtime=0) if compress else raw)
    return path


def small_split(tmp_path, n_images=5, n_labels=5, compress=True):
    suffix = ".gz" if compress else ""
    images = write_idx(
        tmp_path / f"train-images-idx3-ubyte{suffix}",
        data.IMAGE_MAGIC,
        (n_images, 28, 28),
        compress=compress,
    )
    labels = write_idx(
        tmp_path / f"train-labels-idx1-ubyte{suffix}",
        data.LABEL_MAGIC,
        (n_labels,),
        bytes(range(n_labels)),
        compress=compress,
    )
    return images, labels


def test_real_mnist(mnist_dir):
    train_x, train_y, test_x, test_y = data.load_mnist(mnist_dir)
    assert train_x.shape == (60000, 784)
    assert train_x.dtype == np.uint8
    assert test_x.shape == (10000, 784)
    # Class counts published with the canonical files.
    assert np.bincount(train_y).tolist() == [
        5923,
        6742,
        5958,
        6131,
        5842,
        5421,
        5918,
        6265,
        5851,
        5949,
    ]
    assert np.bincount(test_y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_limit_takes_the_first_samples(mnist_dir):
    images, labels = data.load_split(mnist_dir, "test", limit=7)
    full_images, full_labels = data.load_split(mnist_dir, "test")
    np.testing.assert_array_equal(images, full_images[:7])
    np.testing.assert_array_equal(labels, full_labels[:7])


@pytest.mark.parametrize(
    ("split", "limit", "message"),
    [
        ("val", None, r"split: expected 'train' or 'test', found 'val'"),
        ("test", 0, r"limit: expected a whole number >= 1 \(or None for all\), found 0"),
        ("test", -1, r"limit: .* found -1"),
        ("test", 2.5, r"limit: .* found 2\.5"),
    ],
)
def test_bad_split_or_limit_is_named(mnist_dir, split, limit, message):
    with pytest.raises(ValueError, match=message):
        data.load_split(mnist_dir, split, limit)


@pytest.mark.parametrize("compress", [True, False])
def test_small_files_gzipped_or_not(tmp_path, compress):
    small_split(tmp_path, compress=compress)
    images, labels = data.load_split(tmp_path, "train", verify=False)
    assert images.shape == (5, 784)
    assert labels.tolist() == [0, 1, 2, 3, 4]
    assert images[0, :3].tolist() == [0, 1, 2]


def test_wrong_magic_is_named(tmp_path):
    path = write_idx(tmp_path / "x.gz", 0x00000802, (2, 28, 28), compress=True)
    with pytest.raises(
        data.DataError,
        match=r"x.gz: wrong magic number 0x00000802, "
        r"expected 0x00000803",
    ):
        data.read_idx(path, data.IMAGE_MAGIC)


def test_truncated_file_is_named(tmp_path):
    path = write_idx(tmp_path / "t", data.IMAGE_MAGIC, (3, 28, 28))
    path.write_bytes(path.read_bytes()[:-100])
    expected = r"/t: 2268 bytes, expected 2368 for shape \(3, 28, 28\) \(truncated or padded file\)"
    with pytest.raises(data.DataError, match=expected):
        data.read_idx(path, data.IMAGE_MAGIC)
    path.write_bytes(b"\x00\x00")
    with pytest.raises(data.DataError, match="truncated: 2 bytes, expected a 16-byte header"):
        data.read_idx(path, data.IMAGE_MAGIC)


def test_truncated_gzip_is_named(tmp_path):
    path = write_idx(tmp_path / "g.gz", data.LABEL_MAGIC, (100,), compress=True)
    path.write_bytes(path.read_bytes()[:30])
    with pytest.raises(data.DataError, match=r"g\.gz: corrupt or truncated gzip data"):
        data.read_idx(path, data.LABEL_MAGIC)


def test_mismatched_counts_are_named(tmp_path):
    small_split(tmp_path, n_images=5, n_labels=4)
    with pytest.raises(data.DataError, match=r"holds 5 images but .* holds 4 labels"):
        data.load_split(tmp_path, "train", verify=False)


def test_md5_mismatch_is_named(tmp_path):
    small_split(tmp_path)
    with pytest.raises(
        data.DataError,
        match=r"train-images-idx3-ubyte\.gz: decompressed MD5 [0-9a-f]{32}, expected 6bbc9ace",
    ):
        data.load_split(tmp_path, "train")


def test_missing_file_is_named(tmp_path):
    with pytest.raises(data.DataError, match=r"t10k-images-idx3-ubyte.*file not found"):
        data.load_split(tmp_path, "test")


class FakeMirror:
    """Serves files from a directory the way urlopen serves a URL; records what was asked."""

    def __init__(self, directory, corrupt=()):
        self.directory, self.corrupt, self.requested = directory, set(corrupt), []

    def __call__(self, url, timeout):
        self.requested.append(url)
        name = url.rsplit("/", 1)[1]
        if url.startswith("https://down.example/"):
            raise urllib.error.URLError("network unreachable")
        if url.startswith("https://cut.example/"):  # the connection drops mid-body
            raise http.client.IncompleteRead(b"partial", 100)
        payload = (self.directory / name).read_bytes()
        if name in self.corrupt:
            payload = payload[:-1] + bytes([payload[-1] ^ 1])
        return io.BytesIO(payload)


def test_download_verifies_and_falls_back_to_the_next_mirror(tmp_path, mnist_dir):
    mirror = FakeMirror(mnist_dir)
    dest = tmp_path / "mnist"
    mirrors = ["https://down.example/", "https://cut.example/", "https://up.example/"]
    data.download_mnist(dest, mirrors, opener=mirror)
    assert sorted(p.name for p in dest.iterdir()) == sorted(data.GZ_MD5)
    assert len(mirror.requested) == 12
    data.load_mnist(dest)  # verified files load
    # Files already there with the right MD5 are never downloaded again.
    mirror.requested.clear()
    data.download_mnist(dest, ["https://up.example/"], opener=mirror)
    assert mirror.requested == []


def test_download_rejects_bad_md5_and_leaves_nothing(tmp_path, mnist_dir):
    bad = "t10k-labels-idx1-ubyte.gz"
    mirror = FakeMirror(mnist_dir, corrupt=[bad])
    dest = tmp_path / "mnist"
    with pytest.raises(data.DataError, match=f"{bad}: MD5 [0-9a-f]+, expected ec29112d"):
        data.download_mnist(dest, ["https://up.example/"], opener=mirror)
    assert not (dest / bad).exists()
    assert not [p for p in dest.iterdir() if p.name.startswith(".")], "temporary file left"


def test_download_offline_says_so(tmp_path):
    with pytest.raises(
        data.DataError,
        match=r"(?s)could not download .*network unreachable"
        r".*offline\? set mlp.data_dir and cnn.data_dir, or --data-dir,",
    ):
        data.download_mnist(tmp_path, ["https://down.example/"], opener=FakeMirror(tmp_path))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("url", ["http://up.example/", "https://up.example/mnist"])
def test_download_refuses_plain_http_and_urls_that_are_no_base(tmp_path, mnist_dir, url):
    mirror = FakeMirror(mnist_dir)
    with pytest.raises(data.DataError, match=f"{url}: expected an https base URL ending with /"):
        data.download_mnist(tmp_path, [url], opener=mirror)
    assert mirror.requested == []


@pytest.mark.parametrize("mirrors", ["https://up.example/", [], None])
def test_download_names_mirrors_that_are_not_a_list_of_urls(tmp_path, mirrors):
    with pytest.raises(data.DataError, match=r"mirrors: expected a list of https base URLs"):
        data.download_mnist(tmp_path, mirrors)
    assert list(tmp_path.iterdir()) == []


def test_replaced_file_with_wrong_md5_is_downloaded_again(tmp_path, mnist_dir):
    dest = tmp_path / "mnist"
    dest.mkdir()
    for name in data.GZ_MD5:
        shutil.copy(mnist_dir / name, dest / name)
    (dest / "train-labels-idx1-ubyte.gz").write_bytes(b"junk")
    mirror = FakeMirror(mnist_dir)
    data.download_mnist(dest, ["https://up.example/"], opener=mirror)
    assert mirror.requested == ["https://up.example/train-labels-idx1-ubyte.gz"]
    assert (
        data.md5(dest / "train-labels-idx1-ubyte.gz") == data.GZ_MD5["train-labels-idx1-ubyte.gz"]
    )
