"""``--download-weights`` for the neural codecs: huggingface_hub fetches a hub model into the cache, here from a hub
served on 127.0.0.1 (``$HF_ENDPOINT``); offline, one line says what to do and nothing is left behind."""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

import pytest

from codec.encodec.checkpoints import DownloadError
from codec.neural import hub
from testkit.net import free_port

REVISION = "89abcdef0123456789abcdef0123456789abcdef"
MODEL = hub.HubModel("someone/tiny-codec", ("config.json", "model.safetensors"), "MIT", "test")
FILES = {"config.json": b'{"model_type": "tiny"}', "model.safetensors": b"\x00" * 4096 + b"weights",
         "README.md": b"---\nlicense: apache-2.0\n---\n", "other.bin": b"not asked for"}


class _Hub(BaseHTTPRequestHandler):
    """The few endpoints of the hub that huggingface_hub's snapshot download reads, for the repositories in
    ``repos`` (repo id -> file name -> bytes)."""

    requests: list[str] = []
    repos: dict[str, dict[str, bytes]] = {MODEL.repo_id: FILES}

    def log_message(self, *args) -> None:
        pass

    def _send(self, body: bytes, content_type: str = "application/json", extra: dict | None = None) -> None:
        self.send_response(200)
        headers = {"Content-Type": content_type, "Content-Length": str(len(body)), "X-Repo-Commit": REVISION,
                   **(extra or {})}
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self) -> None:
        path = urlparse(self.path).path
        _Hub.requests.append(f"{self.command} {path}")
        for repo_id, files in _Hub.repos.items():
            api = f"/api/models/{repo_id}"
            if path.startswith(f"{api}/revision/"):
                siblings = [{"rfilename": name} for name in files]
                return self._send(json.dumps({"id": repo_id, "sha": REVISION, "siblings": siblings}).encode())
            if path.startswith(f"{api}/tree/"):
                tree = [{"type": "file", "path": name, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
                        for name, data in files.items()]
                return self._send(json.dumps(tree).encode())
            prefix = f"/{repo_id}/resolve/{REVISION}/"
            if path.startswith(prefix) and path[len(prefix):] in files:
                data = files[path[len(prefix):]]
                return self._send(data, "application/octet-stream", {"ETag": f'"{hashlib.sha1(data).hexdigest()}"'})
        self.send_error(404)

    do_HEAD = do_GET


@pytest.fixture
def local_hub(tmp_path, monkeypatch):
    for variable in ("HF_HUB_CACHE", "HF_HOME", "HOME", "ENCODEC_EVAL_HUB_WEIGHTS"):
        monkeypatch.setenv(variable, str(tmp_path / "home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
    _Hub.requests = []
    yield tmp_path / "cache"
    server.shutdown()
    server.server_close()


def test_download_fetches_the_files_loading_needs_into_the_cache(local_hub):
    assert hub.find(MODEL) is None
    weights = hub.download(MODEL)
    assert weights.folder == local_hub / "models--someone--tiny-codec" / "snapshots" / REVISION
    assert weights.identity == f"{MODEL.repo_id}@{REVISION}" and weights.source == "hub cache"
    assert "sha256" not in vars(weights)  # finding weights reads no weights file; a row's digest does
    assert weights.sha256 == hashlib.sha256(FILES["model.safetensors"]).hexdigest()
    assert (weights.licence, weights.licence_source) == ("apache-2.0", f"model card {weights.folder / 'README.md'}")
    assert not (weights.folder / "other.bin").exists()  # only what loading needs, and the card
    asked = len(_Hub.requests)
    assert hub.download(MODEL) == weights and len(_Hub.requests) == asked  # already here: nothing fetched


def test_offline_download_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("ENCODEC_EVAL_HUB_WEIGHTS", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    with pytest.raises(DownloadError) as caught:
        hub.download(MODEL)
    message = str(caught.value)
    assert "\n" not in message and "are you offline?" in message and "hf download someone/tiny-codec" in message
    assert hub.find(MODEL) is None


def test_encodec_bench_download_weights_fetches_the_named_neural_codecs(local_hub, tmp_path, monkeypatch, capsys):
    """`encodec-bench --download-weights --codecs dac:16khz` fetches Meta's EnCodec files (already here, so none)
    and descript/dac_16khz, which then loads through the real path."""
    from codec.base import create
    from codec.encodec.checkpoints import OFFICIAL_FILES, OFFICIAL_LM_FILES
    from encodec_eval.cli import main
    from tests.codecs.neural_fakes import tiny_dac

    official = tmp_path / "official"
    official.mkdir()
    for name in (*OFFICIAL_FILES.values(), *OFFICIAL_LM_FILES.values()):
        (official / name).write_bytes(b"")
    monkeypatch.setenv("ENCODEC_WEIGHTS", str(official))
    saved = tmp_path / "dac"
    tiny_dac("16khz").save_pretrained(saved)
    monkeypatch.setitem(_Hub.repos, "descript/dac_16khz",
                        {name: (saved / name).read_bytes() for name in ("config.json", "model.safetensors")})
    assert main(["--download-weights", "--codecs", "dac:16khz@6", "--list"]) == 0
    assert "descript/dac_16khz ready in" in capsys.readouterr().err
    assert create("dac:16khz@6").describe()["weights"] == f"hub cache: descript/dac_16khz@{REVISION}"
