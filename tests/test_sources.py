"""Finding the upstream files: mirror (checksummed), data/raw, or a download that never leaves a partial file."""
import hashlib
import http.server
import threading

import pytest

from kn_utils import sources


def _mirror(tmp_path, upstream_files, corrupt=False):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    lines = []
    for name, path in upstream_files.items():
        data = path.read_bytes()
        lines.append(f"{hashlib.sha256(data).hexdigest()}  {name}")
        (mirror / name).write_bytes(data[:-3] + b"xyz" if corrupt and name.startswith("pdb_seqres") else data)
    (mirror / "SHA256SUMS").write_text("\n".join(lines) + "\n")
    return mirror


def test_mirror_is_used_in_place_and_checksummed(tmp_path, upstream_files):
    mirror = _mirror(tmp_path, upstream_files)
    found = sources.resolve_sources(mirror, raw_dir=tmp_path / "raw", allow_download=False)
    assert found == {name: mirror / name for name in sources.UPSTREAM_URLS}
    assert not (tmp_path / "raw").exists()


def test_mirror_from_environment(tmp_path, upstream_files, monkeypatch):
    mirror = _mirror(tmp_path, upstream_files)
    monkeypatch.setenv(sources.MIRROR_ENV, str(mirror))
    assert sources.resolve_source("pdb_seqres.txt.gz", raw_dir=tmp_path / "raw").parent == mirror


def test_corrupt_mirror_copy_is_refused(tmp_path, upstream_files):
    mirror = _mirror(tmp_path, upstream_files, corrupt=True)
    with pytest.raises(sources.DataFileError, match="pdb_seqres.txt.gz: SHA-256 differs"):
        sources.resolve_sources(mirror, allow_download=False)


def test_a_malformed_checksum_line_is_named(tmp_path, upstream_files):
    mirror = _mirror(tmp_path, upstream_files)
    sums = mirror / "SHA256SUMS"
    sums.write_text(sums.read_text() + "not a checksum line\n")
    with pytest.raises(sources.DataFileError, match=r"SHA256SUMS: line 3: expected '<64 hex digits>  <file name>'"):
        sources.resolve_sources(mirror, allow_download=False)


def test_missing_file_without_mirror_or_download(tmp_path, monkeypatch):
    monkeypatch.delenv(sources.MIRROR_ENV, raising=False)
    with pytest.raises(sources.DataFileError, match="not found, no mirror given"):
        sources.resolve_source("pdb_seqres.txt.gz", raw_dir=tmp_path, allow_download=False)


class _Server:
    """A loopback HTTP server serving one body, optionally announcing a longer Content-Length than it sends."""

    def __init__(self, body: bytes, announced: int | None = None):
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Length", str(announced or len(body)))
                self.end_headers()
                self.wfile.write(body)
                self.wfile.flush()
                self.close_connection = True

            def log_message(self, *args):
                pass

        self.httpd = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/file.gz"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        outer.body = body

    def close(self):
        self.httpd.shutdown()


def test_download_writes_the_file_atomically(tmp_path, upstream_files):
    body = upstream_files["pdb_seqres.txt.gz"].read_bytes()
    server = _Server(body)
    try:
        target = sources.download(server.url, tmp_path / "raw" / "pdb_seqres.txt.gz", timeout=5)
    finally:
        server.close()
    assert target.read_bytes() == body
    assert not list(target.parent.glob("*.part"))


def test_truncated_download_leaves_nothing_behind(tmp_path, upstream_files):
    body = upstream_files["pdb_seqres.txt.gz"].read_bytes()
    server = _Server(body[: len(body) // 2])
    target = tmp_path / "raw" / "pdb_seqres.txt.gz"
    try:
        with pytest.raises(sources.DataFileError, match="truncated"):
            sources.download(server.url, target, timeout=5)
    finally:
        server.close()
    assert not target.exists() and not list(target.parent.glob("*"))
