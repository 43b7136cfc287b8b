"""Downloads of files without a published checksum from a slow, flaky server, as NOAA NCEI's
(the Plankton archive): no Content-Length, sometimes HTTP 503; tried again, resumed, or a clear
failure."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from types import SimpleNamespace

import pytest

from stn.data import download
from stn.data.download import DownloadError, RemoteFile, fetch, fetch_all
from tests.data.test_download import leftovers
from tests.local_http import serve

BLOB = bytes(range(256)) * 40  # 10240 bytes
NO_CHECKSUM = RemoteFile("ncei.tar", verified_by="its structure: 3 folders of CSV files")


@dataclass
class Scripted:
    """A local server answering its ``n``-th request by ``script[n]`` (the last entry repeats): an
    int ``code`` or ``(code, headers)``: that HTTP error; ``"cut"``: 200 announcing all of ``BLOB``
    but sending half; ``"ok"``: all of it, or the rest after a ``Range`` request (206). Each request
    is noted as ``(path, Range header)``."""

    base: str
    requests: list[tuple[str, str | None]]


@contextmanager
def scripted(script: list, *, content_length: bool = True) -> Iterator[Scripted]:
    requests: list[tuple[str, str | None]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requests.append((self.path, self.headers.get("Range")))
            action = script[min(len(requests), len(script)) - 1]
            if action in ("ok", "cut"):
                start = 0
                if action == "ok" and (wanted := self.headers.get("Range")):
                    start = int(wanted.removeprefix("bytes=").removesuffix("-"))
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(BLOB) - 1}/{len(BLOB)}")
                if content_length:
                    self.send_header("Content-Length", str(len(BLOB) - start))
                self.end_headers()
                self.wfile.write(BLOB[start : len(BLOB) // 2 if action == "cut" else None])
                self.close_connection = True  # the end of a body without Content-Length
                return
            code, headers = action if isinstance(action, tuple) else (action, {})
            self.send_response(code)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    with serve(Handler) as base:
        yield Scripted(base, requests)


def test_remote_file_needs_a_checksum_or_verified_by() -> None:
    with pytest.raises(
        ValueError,
        match=r"give an MD5 or a SHA-256 to verify it by, or, .*, verified_by: what verifies it later",
    ):
        RemoteFile("x.tar")
    with pytest.raises(ValueError, match="verified_by"):
        RemoteFile("x.tar", size=3, verified_by="")
    assert not NO_CHECKSUM.has_checksum and RemoteFile("x", sha256="0" * 64).has_checksum


@pytest.mark.parametrize("size", [None, len(BLOB)])
def test_no_checksum_file_downloads_without_content_length(tmp_path: Path, capsys, size: int | None) -> None:
    file = dataclasses.replace(NO_CHECKSUM, size=size)
    with scripted(["ok"], content_length=False) as server:
        path = fetch(file, tmp_path, [server.base + "/pub/"], progress=True, timeout=5)
    assert path == tmp_path / file.name and path.read_bytes() == BLOB
    assert server.requests == [(f"/pub/{file.name}", None)]
    assert leftovers(tmp_path) == []
    bar = capsys.readouterr().err.splitlines()[-1]  # tqdm's last line: bytes, and no total unless known
    assert bar.startswith(f"{file.name}: ")
    if size is None:  # a count of bytes, with no total
        assert "10.0kB " in bar and "%" not in bar
    else:  # the known size is the total
        assert "100%" in bar and "10.0k/10.0k " in bar


def test_no_checksum_download_still_checks_a_known_size(tmp_path: Path, capsys) -> None:
    longer = dataclasses.replace(NO_CHECKSUM, size=len(BLOB) - 1)
    with scripted(["ok"], content_length=False) as server, pytest.raises(DownloadError) as info:
        fetch(longer, tmp_path, [server.base], progress=False, timeout=5)
    assert f"size mismatch: expected {len(BLOB) - 1} bytes, got {len(BLOB)}" in str(info.value)
    assert "no published checksum; verified by its structure" in str(info.value)
    assert len(server.requests) == 1 and list(tmp_path.iterdir()) == []
    shorter = dataclasses.replace(NO_CHECKSUM, size=len(BLOB) + 1)
    with scripted(["ok"], content_length=False) as server, pytest.raises(DownloadError) as info:
        fetch(shorter, tmp_path, [server.base], progress=False, timeout=5)
    # broke off (as far as the size tells), resumed, and the server tells the whole length
    assert f"broke off after {len(BLOB)} of {len(BLOB) + 1} bytes; trying again" in capsys.readouterr().err
    assert f"the server announces {len(BLOB)} bytes, expected {len(BLOB) + 1}" in str(info.value)
    assert server.requests[1] == (f"/{NO_CHECKSUM.name}", f"bytes={len(BLOB)}-")
    assert list(tmp_path.iterdir()) == []


def test_present_no_checksum_file_is_used_without_a_request(tmp_path: Path) -> None:
    (tmp_path / NO_CHECKSUM.name).write_bytes(b"placed by hand")
    with scripted(["ok"]) as server:
        assert fetch(NO_CHECKSUM, tmp_path, [server.base], progress=False) == tmp_path / NO_CHECKSUM.name
        sized = dataclasses.replace(NO_CHECKSUM, size=14)
        assert fetch(sized, tmp_path, [server.base], progress=False) == tmp_path / NO_CHECKSUM.name
        with pytest.raises(DownloadError, match="exists but has 14 bytes, expected 15 bytes"):
            fetch(dataclasses.replace(NO_CHECKSUM, size=15), tmp_path, [server.base], progress=False)
    assert server.requests == []
    assert (tmp_path / NO_CHECKSUM.name).read_bytes() == b"placed by hand"


def test_503_is_tried_again_after_printed_waits(tmp_path: Path, capsys) -> None:
    file = RemoteFile("ncei.tar", hashlib.md5(BLOB).hexdigest())  # with a checksum, too
    with scripted([503, 503, "ok"], content_length=False) as server:
        path = fetch(file, tmp_path, [server.base], progress=False, timeout=5, attempts=5, backoff=0.01)
    assert path.read_bytes() == BLOB and len(server.requests) == 3
    url = f"{server.base}/{file.name}"
    assert capsys.readouterr().err.splitlines() == [
        f"{url}: HTTP 503 Service Unavailable; trying again in 0.01 s (2 of 5)",
        f"{url}: HTTP 503 Service Unavailable; trying again in 0.02 s (3 of 5)",
    ]
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("code", "transient"), [(429, True), (500, True), (502, True), (504, True), (404, False)]
)
def test_which_http_errors_are_tried_again(tmp_path: Path, code: int, transient: bool) -> None:
    with scripted([code, "ok"]) as server:
        if transient:
            path = fetch(NO_CHECKSUM, tmp_path, [server.base], progress=False, timeout=5, backoff=0.01)
            assert path.read_bytes() == BLOB
        else:
            with pytest.raises(DownloadError, match=rf"/{NO_CHECKSUM.name}: HTTP {code} Not Found\n"):
                fetch(NO_CHECKSUM, tmp_path, [server.base], progress=False, timeout=5, backoff=0.01)
    assert len(server.requests) == (2 if transient else 1)


def test_503_after_a_broken_transfer_keeps_the_bytes_and_resumes(tmp_path: Path, capsys) -> None:
    half = len(BLOB) // 2
    with scripted(["cut", 503, "ok"]) as server:
        path = fetch(NO_CHECKSUM, tmp_path, [server.base], progress=False, timeout=5, backoff=0.01)
    assert path.read_bytes() == BLOB
    name = f"/{NO_CHECKSUM.name}"
    assert server.requests == [(name, None), (name, f"bytes={half}-"), (name, f"bytes={half}-")]
    err = capsys.readouterr().err
    assert f"broke off after {half} of {len(BLOB)} bytes; trying again (2 of 3)" in err  # no wait
    assert "HTTP 503 Service Unavailable; trying again in 0.02 s (3 of 3)" in err


def test_always_503_fails_clearly(tmp_path: Path, capsys) -> None:
    with scripted([503]) as server, pytest.raises(DownloadError) as info:
        fetch(
            NO_CHECKSUM, tmp_path / "raw", [server.base], progress=False, timeout=5, attempts=4, backoff=0.001
        )
    url = f"{server.base}/{NO_CHECKSUM.name}"
    message = str(info.value)
    assert (
        f"Could not download {NO_CHECKSUM.name} (no published checksum; verified by its structure" in message
    )
    assert f"{url}: HTTP 503 Service Unavailable (4 tries)" in message
    assert f"You can place the file at {tmp_path / 'raw' / NO_CHECKSUM.name} by hand." in message
    assert len(server.requests) == 4 and list((tmp_path / "raw").iterdir()) == []
    assert len(capsys.readouterr().err.splitlines()) == 3  # a wait before each of tries 2 to 4


def test_retry_after_is_honoured_up_to_max_wait(tmp_path: Path, monkeypatch, capsys) -> None:
    waits: list[float] = []
    monkeypatch.setattr(download, "time", SimpleNamespace(sleep=waits.append))  # never sleeps
    script = [
        (503, {"Retry-After": "7"}),
        (429, {"Retry-After": "3600"}),
        (503, {"Retry-After": "soon"}),
        "ok",
    ]
    with scripted(script) as server:
        path = fetch(
            NO_CHECKSUM,
            tmp_path,
            [server.base],
            progress=False,
            timeout=5,
            attempts=4,
            backoff=2,
            max_wait=60,
        )
    assert path.read_bytes() == BLOB
    assert waits == [7, 60, 2 * 2**2]  # the server's, capped, then the backoff for an unusable one
    err = capsys.readouterr().err
    assert "HTTP 503 Service Unavailable; trying again in 7 s (2 of 4)" in err
    assert "HTTP 429 Too Many Requests; trying again in 60 s (3 of 4)" in err
    assert "HTTP 503 Service Unavailable; trying again in 8 s (4 of 4)" in err
    # fetch_all passes the settings on
    waits.clear()
    with scripted([(503, {"Retry-After": "100"}), "ok"]) as server:
        fetch_all([NO_CHECKSUM], tmp_path / "all", [server.base], progress=False, max_wait=5)
    assert waits == [5]
