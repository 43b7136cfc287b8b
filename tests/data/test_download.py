"""Verified downloads of (fake) MNIST raw files from a local HTTP server."""

from __future__ import annotations

import gzip
import hashlib
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import numpy as np
import pytest

from stn.data import download
from stn.data.download import DownloadError, RemoteFile, fetch, fetch_all, md5sum
from stn.data.mnist.files import MNIST_FILES, load_official_mnist, present_mnist_files, read_idx
from tests.file_modes import UMASKS, modes, open_modes, umask
from tests.local_http import closed_port_url as local_port_url
from tests.local_http import serve

_CODES = {np.dtype("u1"): 0x08, np.dtype("i1"): 0x09, np.dtype("i2"): 0x0B, np.dtype("i4"): 0x0C}
_CODES |= {np.dtype("f4"): 0x0D, np.dtype("f8"): 0x0E}


def idx_bytes(arr: np.ndarray) -> bytes:
    """Encode ``arr`` as an uncompressed IDX file."""
    header = bytes([0, 0, _CODES[arr.dtype], arr.ndim])
    header += b"".join(d.to_bytes(4, "big") for d in arr.shape)
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


@dataclass
class FakeMnist:
    """Small generated MNIST-like raw files, their arrays and ``RemoteFile`` entries."""

    arrays: dict[str, np.ndarray]
    blobs: dict[str, bytes]
    files: dict[str, RemoteFile]

    def place(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        for name, blob in self.blobs.items():
            (root / name).write_bytes(blob)


def random_mnist(seed: int, train: int, test: int) -> dict[str, np.ndarray]:
    """Random digits and labels shaped like the four MNIST files."""
    rng = np.random.default_rng(seed)
    return {
        "train_images": rng.integers(0, 256, (train, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, train, dtype=np.uint8),
        "test_images": rng.integers(0, 256, (test, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, test, dtype=np.uint8),
    }


@pytest.fixture(scope="module")
def fake() -> FakeMnist:
    arrays = random_mnist(0, 20, 8)
    blobs, files = {}, {}
    for key, arr in arrays.items():
        blob = gzip.compress(idx_bytes(arr), mtime=0)
        name = f"fake-{MNIST_FILES[key].name}"
        blobs[name] = blob
        files[key] = RemoteFile(name, hashlib.md5(blob).hexdigest())
    return FakeMnist(arrays, blobs, files)


@dataclass
class Server:
    """Local mirror server: ``/good/`` serves the files, ``/corrupt/`` flips a byte, ``/truncate/``
    announces the whole file but sends half, ``/flaky/`` does so on a file's first request only,
    ``/stall/`` sends half and then waits until ``release`` is set; else 404."""

    base: str
    requests: list[str] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)


@pytest.fixture
def server(fake: FakeMnist) -> Iterator[Server]:
    requests: list[str] = []
    release = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requests.append(self.path)
            mode, _, name = self.path.strip("/").partition("/")
            blob = fake.blobs.get(name)
            if blob is None or mode not in ("good", "corrupt", "truncate", "flaky", "stall"):
                self.send_error(404)
                return
            if mode == "corrupt":
                blob = blob[:-1] + bytes([blob[-1] ^ 0xFF])
            self.send_response(200)
            self.send_header("Content-Length", str(len(blob)))
            self.end_headers()
            if mode == "truncate" or (mode == "flaky" and requests.count(self.path) == 1):
                self.wfile.write(blob[: len(blob) // 2])  # then the connection closes
                self.close_connection = True
                return
            if mode == "stall":
                self.wfile.write(blob[: len(blob) // 2])
                self.wfile.flush()
                release.wait(60)
                self.close_connection = True
                return
            self.wfile.write(blob)

        def log_message(self, *args: object) -> None:
            pass

    with serve(Handler) as base:
        try:
            yield Server(base, requests, release)
        finally:
            release.set()  # stalled handlers end before the server shuts down


@pytest.fixture
def closed_port_url() -> str:
    """A URL on a local port nobody listens on."""
    return local_port_url("mnist")


def assert_roundtrip(result: tuple[np.ndarray, ...], fake: FakeMnist) -> None:
    keys = ("train_images", "train_labels", "test_images", "test_labels")
    for key, arr in zip(keys, result, strict=True):
        np.testing.assert_array_equal(arr, fake.arrays[key])
    assert result[0].dtype == np.uint8 and result[2].dtype == np.uint8
    assert result[1].dtype == np.int64 and result[3].dtype == np.int64


def leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name.endswith(".part"))


@pytest.mark.parametrize("suffix", ["/good/", "/good"])
def test_download_roundtrip(tmp_path: Path, fake: FakeMnist, server: Server, suffix: str) -> None:
    root = tmp_path / "raw"
    result = load_official_mnist(root, [server.base + suffix], progress=False, files=fake.files)
    assert_roundtrip(result, fake)
    assert sorted(p.name for p in root.iterdir()) == sorted(fake.blobs)
    assert len(server.requests) == 4


@pytest.mark.parametrize("mask", UMASKS)
def test_a_download_gets_the_mode_open_gives_under_the_umask(
    tmp_path: Path, fake: FakeMnist, server: Server, mask: int
) -> None:
    with umask(mask):
        path = fetch(fake.files["train_labels"], tmp_path, [server.base + "/good/"], progress=False)
    assert modes([path]) == open_modes([path], mask) and list(tmp_path.iterdir()) == [path]


def test_fetch_with_progress_bar(tmp_path: Path, fake: FakeMnist, server: Server) -> None:
    file = fake.files["train_images"]
    path = fetch(file, tmp_path, [server.base + "/good/"], progress=True, timeout=5)
    assert path == tmp_path / file.name
    assert md5sum(path) == file.md5


@pytest.mark.parametrize("first", ["404", "unreachable"])
def test_falls_back_to_next_mirror(
    tmp_path: Path, fake: FakeMnist, server: Server, closed_port_url: str, first: str
) -> None:
    bad = server.base + "/missing/" if first == "404" else closed_port_url
    paths = fetch_all(list(fake.files.values()), tmp_path, [bad, server.base + "/good/"], progress=False)
    assert [md5sum(p) for p in paths] == [f.md5 for f in fake.files.values()]
    assert leftovers(tmp_path) == []
    if first == "404":
        name = fake.files["train_images"].name
        assert server.requests[:2] == [f"/missing/{name}", f"/good/{name}"]


def test_corrupted_download_leaves_nothing(tmp_path: Path, fake: FakeMnist, server: Server) -> None:
    file = fake.files["train_labels"]
    with pytest.raises(DownloadError, match=f"MD5 mismatch: expected {file.md5}"):
        fetch(file, tmp_path, [server.base + "/corrupt/"], progress=False, timeout=5)
    assert list(tmp_path.iterdir()) == []


def test_present_files_used_without_network(tmp_path: Path, fake: FakeMnist, closed_port_url: str) -> None:
    fake.place(tmp_path)
    result = load_official_mnist(tmp_path, [closed_port_url], progress=False, files=fake.files)
    assert_roundtrip(result, fake)


def test_present_file_with_wrong_md5(tmp_path: Path, fake: FakeMnist, server: Server) -> None:
    file = fake.files["test_images"]
    path = tmp_path / file.name
    path.write_bytes(b"not the right file")
    with pytest.raises(DownloadError) as info:
        fetch(file, tmp_path, [server.base + "/good/"], progress=False, timeout=5)
    message = str(info.value)
    assert str(path) in message and file.md5 in message and md5sum(path) in message
    assert "Delete" in message
    assert path.read_bytes() == b"not the right file"
    assert server.requests == []


def test_all_mirrors_fail(tmp_path: Path, fake: FakeMnist, server: Server, closed_port_url: str) -> None:
    file = fake.files["test_labels"]
    mirrors = [server.base + "/missing/", closed_port_url, server.base + "/corrupt/"]
    with pytest.raises(DownloadError) as info:
        fetch(file, tmp_path / "raw", mirrors, progress=False, timeout=5)
    message = str(info.value)
    for mirror in mirrors:
        assert mirror + file.name in message
    assert "HTTP 404" in message and "MD5 mismatch" in message
    assert f"place the file at {tmp_path / 'raw' / file.name} by hand" in message
    assert list((tmp_path / "raw").iterdir()) == []


def test_no_mirrors(tmp_path: Path, fake: FakeMnist) -> None:
    with pytest.raises(DownloadError, match="no mirrors"):
        fetch(fake.files["train_images"], tmp_path, [], progress=False)


@pytest.mark.parametrize("dtype", ["u1", "i1", "i2", "i4", "f4", "f8"])
@pytest.mark.parametrize("compressed", [True, False])
def test_read_idx_roundtrip(tmp_path: Path, dtype: str, compressed: bool) -> None:
    arr = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
    data = idx_bytes(arr)
    path = tmp_path / ("x.idx.gz" if compressed else "x.idx")
    path.write_bytes(gzip.compress(data) if compressed else data)
    out = read_idx(path)
    np.testing.assert_array_equal(out, arr)
    assert out.dtype == arr.dtype


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"\x08\x03\x00\x00" + bytes(12), "bad IDX magic number"),
        (
            b"\x00\x00\x07\x01" + (3).to_bytes(4, "big") + bytes(3),
            "unknown IDX data type code 0x07",
        ),
        (b"\x00\x00\x08\x02" + (3).to_bytes(4, "big"), "truncated header"),
        (b"\x00\x00\x08\x01" + (3).to_bytes(4, "big") + bytes(2), "needs 3 data bytes, found 2"),
        (b"\x00\x00", "too short"),
    ],
)
def test_read_idx_rejects_malformed(tmp_path: Path, data: bytes, match: str) -> None:
    path = tmp_path / "bad.idx"
    path.write_bytes(data)
    with pytest.raises(ValueError, match=match) as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_read_idx_rejects_bad_gzip(tmp_path: Path) -> None:
    path = tmp_path / "bad.idx.gz"
    path.write_bytes(b"plain bytes")
    with pytest.raises(ValueError, match="not a valid gzip file"):
        read_idx(path)


def test_label_count_mismatch(tmp_path: Path, fake: FakeMnist) -> None:
    fake.place(tmp_path)
    labels = gzip.compress(idx_bytes(np.zeros(7, np.uint8)))
    (tmp_path / "short-labels.gz").write_bytes(labels)
    files = fake.files | {"test_labels": RemoteFile("short-labels.gz", hashlib.md5(labels).hexdigest())}
    with pytest.raises(ValueError, match="8 images but 7 labels"):
        load_official_mnist(tmp_path, [], progress=False, files=files)


# Verified by content: a re-compressed or uncompressed copy, and torchvision's MNIST/raw folder.


@pytest.fixture(scope="module")
def by_content(fake: FakeMnist) -> dict[str, RemoteFile]:
    """``fake.files`` with the MD5s of their decompressed content, as ``MNIST_FILES`` has them."""
    return {
        key: RemoteFile(file.name, file.md5, hashlib.md5(idx_bytes(fake.arrays[key])).hexdigest())
        for key, file in fake.files.items()
    }


def place_as(fake: FakeMnist, files: dict[str, RemoteFile], directory: Path, form: str) -> None:
    """Write the fake files into ``directory``: re-compressed (another gzip header) or uncompressed."""
    directory.mkdir(parents=True, exist_ok=True)
    for key, file in files.items():
        data = idx_bytes(fake.arrays[key])
        if form == "recompressed":
            blob = gzip.compress(data, compresslevel=1, mtime=123456)
            assert hashlib.md5(blob).hexdigest() != file.md5
            (directory / file.name).write_bytes(blob)
        else:
            (directory / file.raw_name).write_bytes(data)


def test_real_table_has_content_checksums() -> None:
    for file in MNIST_FILES.values():
        assert len(file.content_md5) == 32 and file.content_md5 != file.md5
        assert file.raw_name == file.name.removesuffix(".gz")


@pytest.mark.parametrize("where", [".", "MNIST/raw"])
@pytest.mark.parametrize("form", ["recompressed", "uncompressed"])
def test_genuine_data_in_another_form_is_accepted(
    tmp_path: Path, fake: FakeMnist, by_content: dict, closed_port_url: str, form: str, where: str
) -> None:
    place_as(fake, by_content, tmp_path / where, form)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    result = load_official_mnist(tmp_path, [closed_port_url], progress=False, files=by_content)
    assert_roundtrip(result, fake)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing written
    expected = [
        tmp_path / where / (f.name if form == "recompressed" else f.raw_name) for f in by_content.values()
    ]
    assert present_mnist_files(tmp_path, by_content) == expected  # the workflow's inputs


def test_present_mnist_files_names_download_targets(tmp_path: Path, by_content: dict) -> None:
    assert present_mnist_files(tmp_path, by_content) == [tmp_path / f.name for f in by_content.values()]


@pytest.mark.parametrize("form", ["gz", "uncompressed"])
def test_wrong_content_fails_with_both_checksums(
    tmp_path: Path, fake: FakeMnist, by_content: dict, form: str
) -> None:
    file = by_content["test_labels"]
    wrong = idx_bytes(np.zeros(8, np.uint8))
    path = tmp_path / "MNIST" / "raw" / (file.name if form == "gz" else file.raw_name)
    path.parent.mkdir(parents=True)
    path.write_bytes(gzip.compress(wrong) if form == "gz" else wrong)
    with pytest.raises(DownloadError) as info:
        fetch(file, tmp_path, [], progress=False, also_in=[tmp_path / "MNIST" / "raw"])
    message = str(info.value)
    assert str(path) in message and md5sum(path) in message
    assert file.md5 in message and file.content_md5 in message
    if form == "gz":
        assert hashlib.md5(wrong).hexdigest() in message  # the content's own checksum


def test_missing_everywhere_lists_the_places(tmp_path: Path, by_content: dict) -> None:
    file = by_content["train_labels"]
    with pytest.raises(DownloadError) as info:
        fetch(file, tmp_path, [], progress=False, also_in=[tmp_path / "MNIST" / "raw"])
    for place in (tmp_path / file.name, tmp_path / "MNIST" / "raw" / file.raw_name):
        assert str(place) in str(info.value)


def test_mirror_with_recompressed_file_is_accepted(tmp_path: Path, fake: FakeMnist, by_content: dict) -> None:
    """A mirror serving the same data with another gzip header: verified by content."""
    key = "train_labels"
    other = RemoteFile(by_content[key].name, "0" * 32, by_content[key].content_md5)
    fake.place(tmp_path / "mirror")
    path = fetch(other, tmp_path / "raw", [(tmp_path / "mirror").as_uri()], progress=False)
    np.testing.assert_array_equal(read_idx(path), fake.arrays[key])
    wrong = RemoteFile(other.name, "0" * 32, "1" * 32)
    with pytest.raises(DownloadError, match=f"content MD5 {by_content[key].content_md5}"):
        fetch(wrong, tmp_path / "raw2", [(tmp_path / "mirror").as_uri()], progress=False)
    assert list((tmp_path / "raw2").iterdir()) == []


# Truncated transfers: tried again, or a clear failure; never a truncated file under the final name.


def test_truncated_transfer_is_tried_again(tmp_path: Path, fake: FakeMnist, server: Server, capsys) -> None:
    file = fake.files["train_images"]
    path = fetch(file, tmp_path, [server.base + "/flaky/"], progress=False, timeout=5)
    assert path == tmp_path / file.name and md5sum(path) == file.md5
    assert server.requests == [f"/flaky/{file.name}"] * 2
    half = len(fake.blobs[file.name]) // 2
    assert (
        f"broke off after {half} of {len(fake.blobs[file.name])} bytes; trying again"
        in capsys.readouterr().err
    )
    assert leftovers(tmp_path) == []


def test_always_truncated_fails_clearly_then_a_rerun_succeeds(
    tmp_path: Path, fake: FakeMnist, server: Server
) -> None:
    file = fake.files["test_images"]
    with pytest.raises(DownloadError) as info:
        fetch(file, tmp_path, [server.base + "/truncate/"], progress=False, timeout=5, attempts=2)
    size, url = len(fake.blobs[file.name]), f"{server.base}/truncate/{file.name}"
    assert f"{url}: the transfer broke off after {size // 2} of {size} bytes (2 tries)" in str(info.value)
    assert server.requests == [f"/truncate/{file.name}"] * 2
    assert list(tmp_path.iterdir()) == []  # no truncated file, under any name
    path = fetch(file, tmp_path, [server.base + "/good/"], progress=False, timeout=5)  # the rerun
    assert md5sum(path) == file.md5 and sorted(p.name for p in tmp_path.iterdir()) == [file.name]


def test_download_killed_mid_transfer_leaves_no_file_a_rerun_accepts(
    tmp_path: Path, fake: FakeMnist, server: Server
) -> None:
    """kill -9 of a downloading process: only its ``.part`` file stays; the rerun downloads the
    file again and verifies it."""
    file = fake.files["train_images"]
    code = (  # stn.data.download loaded from its file in a process of its own
        "import importlib.util as u, sys; from pathlib import Path; "
        "spec = u.spec_from_file_location('download', sys.argv[5]); d = u.module_from_spec(spec); "
        "sys.modules['download'] = d; spec.loader.exec_module(d); "
        "d.fetch(d.RemoteFile(sys.argv[1], sys.argv[2]), Path(sys.argv[3]), [sys.argv[4]], progress=False)"
    )
    source = Path(download.__file__)
    args = [
        sys.executable,
        "-c",
        code,
        file.name,
        file.md5,
        str(tmp_path),
        server.base + "/stall/",
        str(source),
    ]
    process = subprocess.Popen(args)
    try:
        deadline = time.monotonic() + 60
        while not (server.requests and list(tmp_path.glob("*.part"))):  # half sent, the rest stalls
            assert process.poll() is None and time.monotonic() < deadline, "the download did not start"
            time.sleep(0.01)
        time.sleep(0.2)
    finally:
        process.kill()
        process.wait()
    [part] = tmp_path.glob("*.part")
    blob = fake.blobs[file.name]
    assert blob.startswith(part.read_bytes()) and part.stat().st_size < len(blob)  # a truncated transfer
    assert sorted(p.name for p in tmp_path.iterdir()) == [part.name]  # nothing under the final name

    path = fetch(file, tmp_path, [server.base + "/good/"], progress=False, timeout=5)  # the rerun
    assert path == tmp_path / file.name and md5sum(path) == file.md5
    np.testing.assert_array_equal(read_idx(path), fake.arrays["train_images"])
    assert leftovers(tmp_path) == [part.name]  # left alone, never read
    # a truncated file placed under the final name is refused, not used
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DownloadError, match=f"{re.escape(str(path))} exists but has MD5"):
        fetch(file, tmp_path, [server.base + "/good/"], progress=False, timeout=5)
