"""Fetching the official weights: from a local HTTP server on 127.0.0.1 that publishes random-weight checkpoints
under official-style names (sha256 prefix in the name), into the folder the official package uses. No test touches
the internet."""

from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from codec.encodec import checkpoints as ck
from codec.encodec.cli import main as encodec_main
from codec.encodec.config import EncodecConfig
from codec.encodec.lm import EntropyLM, find_official_lm, load_lm
from codec.encodec.model import EncodecModel
from encodec_eval.cli import main as bench_main
from testkit.net import free_port


def _publish(folder: Path, stem: str, state: dict[str, torch.Tensor]) -> str:
    """Save ``state`` as ``<stem>-<first 8 hex digits of its sha256>.th``, the official naming, and return the name."""
    part = folder / f"{stem}.tmp"
    torch.save(state, part)
    name = f"{stem}-{ck.sha256_of(part)[:8]}.th"
    part.rename(folder / name)
    return name


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> tuple[Path, dict[tuple[str, bool], str], dict[str, EncodecModel]]:
    """Random official-format codecs and LMs for both models, and the names they are published under."""
    folder = tmp_path_factory.mktemp("published")
    names, models = {}, {}
    torch.manual_seed(3)
    for model_name in ck.OFFICIAL_FILES:
        config = EncodecConfig.preset(model_name)
        models[model_name] = EncodecModel(config).eval()
        names[model_name, False] = _publish(folder, model_name, models[model_name].state_dict())
        lm_stem = ck.OFFICIAL_LM_FILES[model_name].rsplit("-", 1)[0]
        names[model_name, True] = _publish(folder, lm_stem, EntropyLM.for_codec(config).state_dict())
    return folder, names, models


@pytest.fixture
def as_official(published, monkeypatch):
    """The published files stand in for the official ones: same names in OFFICIAL_FILES / OFFICIAL_LM_FILES."""
    _, names, _ = published
    for (model_name, lm), filename in names.items():
        monkeypatch.setitem(ck.OFFICIAL_LM_FILES if lm else ck.OFFICIAL_FILES, model_name, filename)
    return names


class _Handler(BaseHTTPRequestHandler):
    """Serves the files of ``server.folder``; in a ``truncated/`` folder it announces the full length, sends half, hangs
    up."""

    def do_GET(self) -> None:
        path = self.server.folder / self.path.rsplit("/", 1)[-1]
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2] if "/truncated/" in self.path else data)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def server(published):
    """Base URL of a server on 127.0.0.1 that publishes the files."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.folder = published[0]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/encodec/v0/"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def hub(monkeypatch, tmp_path) -> Path:
    """A fresh torch hub cache, no $ENCODEC_WEIGHTS, no URL override: where the official package would download."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("ENCODEC_WEIGHTS", raising=False)
    monkeypatch.delenv(ck.DOWNLOAD_URL_ENV, raising=False)
    return tmp_path / "torch" / "hub" / "checkpoints"


def test_downloaded_codec_and_lm_land_in_the_torch_hub_cache_and_load(published, as_official, server, hub,
                                                                      monkeypatch):
    folder, names, models = published
    monkeypatch.setenv(ck.DOWNLOAD_URL_ENV, server)
    model = ck.load_model("encodec_24khz", download=True)
    assert sorted(p.name for p in hub.iterdir()) == [names["encodec_24khz", False]]  # no temporary file left
    assert (hub / names["encodec_24khz", False]).read_bytes() == (folder / names["encodec_24khz", False]).read_bytes()
    x = torch.randn(1, 1, 2000)
    with torch.no_grad():
        assert torch.allclose(model(x), models["encodec_24khz"](x), atol=1e-5)
    lm_path = ck.download_official("encodec_24khz", lm=True, progress=False)
    config = EncodecConfig.encodec_24khz()
    assert lm_path == hub / names["encodec_24khz", True] == find_official_lm(config)
    assert load_lm(lm_path, config).n_q == config.n_q
    monkeypatch.setenv(ck.DOWNLOAD_URL_ENV, f"http://127.0.0.1:{free_port()}/")  # present files need no server
    assert ck.download_official("encodec_24khz") == hub / names["encodec_24khz", False]


def test_encodec_weights_folder_takes_the_download(published, as_official, server, hub, monkeypatch, tmp_path):
    monkeypatch.setenv("ENCODEC_WEIGHTS", str(tmp_path / "mine"))
    name = as_official["encodec_48khz", True]
    path = ck.download_official(name, base_url=server, progress=False)  # a published file name works too
    assert path == tmp_path / "mine" / name and path.read_bytes() == (published[0] / name).read_bytes()
    assert not hub.exists()


def test_truncated_download_keeps_nothing(as_official, server, hub):
    with pytest.raises(ck.DownloadError, match=r"truncated download: \d+ of \d+ bytes arrived; nothing was kept"):
        ck.download_official("encodec_48khz", lm=True, base_url=server + "truncated/", progress=False)
    assert list(hub.iterdir()) == []
    assert ck.find_official_checkpoint(as_official["encodec_48khz", True]) is None


def test_hash_mismatch_removes_the_file(published, as_official, server, hub, monkeypatch):
    folder, names, _ = published
    good = names["encodec_48khz", True]
    stem, digest = good[: -len(".th")].rsplit("-", 1)
    wrong = f"{stem}-{format(int(digest, 16) ^ 0xFFFFFFFF, '08x')}.th"  # same bytes, another promised hash
    (folder / wrong).write_bytes((folder / good).read_bytes())
    monkeypatch.setitem(ck.OFFICIAL_LM_FILES, "encodec_48khz", wrong)
    with pytest.raises(ck.DownloadError, match=f"hash mismatch: .* begins {digest}, the file name promises "
                                               f"{wrong[-11:-3]}; the download was removed"):
        ck.download_official("encodec_48khz", lm=True, base_url=server, progress=False)
    assert list(hub.iterdir()) == []


def test_unreachable_server_says_offline_and_where_to_copy(as_official, hub):
    url = f"http://127.0.0.1:{free_port()}/encodec/v0/"  # nothing listens there
    with pytest.raises(ck.DownloadError) as err:
        ck.download_official("encodec_24khz", base_url=url, progress=False)
    text = str(err.value)
    assert "\n" not in text and text.startswith(f"could not reach {url}{as_official['encodec_24khz', False]}")
    assert "offline" in text and f"copy it into {hub}" in text
    assert not hub.exists() or list(hub.iterdir()) == []


def test_missing_file_and_unknown_names(as_official, server, hub, monkeypatch):
    monkeypatch.setitem(ck.OFFICIAL_FILES, "encodec_48khz", "encodec_48khz-0123abcd.th")  # not published
    with pytest.raises(ck.DownloadError, match="encodec_48khz-0123abcd.th: the server answered HTTP 404"):
        ck.download_official("encodec_48khz", base_url=server, progress=False)
    with pytest.raises(ck.WeightsNotFoundError, match="'encodec_96khz' is not an official EnCodec file"):
        ck.download_official("encodec_96khz")


def test_cli_flags_download_everything_from_the_url_in_the_environment(published, as_official, server, hub,
                                                                       monkeypatch, tmp_path, capsys):
    folder, names, _ = published
    monkeypatch.setenv(ck.DOWNLOAD_URL_ENV, server)
    assert encodec_main(["--download-weights"]) == 0
    assert sorted(p.name for p in hub.iterdir()) == sorted(names.values())
    assert all(hashlib.sha256((hub / n).read_bytes()).hexdigest().startswith(n[-11:-3]) for n in names.values())
    assert f"official weights ready in {hub}" in capsys.readouterr().err
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "other"))  # a second machine: $ENCODEC_WEIGHTS gets them
    monkeypatch.setenv("ENCODEC_WEIGHTS", str(tmp_path / "bench"))
    assert bench_main(["--download-weights", "--list"]) == 0
    assert sorted(p.name for p in (tmp_path / "bench").iterdir()) == sorted(names.values())
    assert "codecs:" in capsys.readouterr().out


def test_cli_flags_fail_in_one_line_offline(as_official, hub, monkeypatch, capsys):
    monkeypatch.setenv(ck.DOWNLOAD_URL_ENV, f"http://127.0.0.1:{free_port()}/")
    assert encodec_main(["--download-weights"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("could not reach http://127.0.0.1:") and "\n" not in err
    assert bench_main(["--download-weights"]) == 2
    assert capsys.readouterr().err.startswith("encodec-bench: error: could not reach")


def test_encodec_needs_a_path_unless_downloading(capsys):
    with pytest.raises(SystemExit) as exc:
        encodec_main([])
    assert exc.value.code == 2 and "required: PATH" in capsys.readouterr().err
