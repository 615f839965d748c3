"""DAC, SNAC, Mimi and Vocos behind the codec interface, offline: random weights built from each published
configuration (shapes, frame rates, measured kbps = codebooks x log2(codebook size) x frame rate, --bw mapping),
checkpoints in a fake Hugging Face cache loaded through the real path, the one-line message without weights, and
encodec-bench on a tiny set."""

from __future__ import annotations

import importlib.util
import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from codec import audio
from codec.base import CodecError, CodecSpec, create
from codec.encodec.checkpoints import WeightsNotFoundError, sha256_of
from codec.neural import catalogue
from codec.neural.token_codec import choose_codebooks
from encodec_eval.metrics.mos_predictors import DNSMOS_FILES
from tests.codecs.neural_fakes import REVISION, write_all
from tests.codecs.signals import DATA

pytest.importorskip("snac", reason="the `neural` extra is not installed; run scripts/setup.sh")
if importlib.util.find_spec("vocos") is None:  # importing it needs the placeholder of codec.neural.vocos
    pytest.skip("vocos is not installed; run scripts/setup.sh", allow_module_level=True)

# spec with random weights -> (sample rate, codebooks, codebook size, frame rates of its code groups, samples per
# whole frame of the coarsest group): the published models' numbers.
PUBLISHED = {
    "dac:16khz-random": (16000, 12, 1024, [50.0], 320),
    "dac:24khz-random": (24000, 32, 1024, [75.0], 320),
    "dac:44khz-random": (44100, 9, 1024, [44100 / 512], 512),
    "snac:24khz-random": (24000, 3, 4096, [24000 / 512 / 4, 24000 / 512 / 2, 24000 / 512], 2048),
    "mimi:random": (24000, 8, 2048, [12.5], 1920),
    "vocos:random": (24000, 8, 1024, [75.0], 320),
}


@pytest.fixture
def no_weights(tmp_path, monkeypatch):
    """A machine without any weights, whatever this one holds."""
    for variable in ("ENCODEC_WEIGHTS", "HF_HUB_CACHE", "HF_HOME", "TORCH_HOME", "HOME", "ENCODEC_EVAL_HUB_WEIGHTS"):
        monkeypatch.setenv(variable, str(tmp_path / "empty"))
    monkeypatch.delenv("ENCODEC_EVAL_WEIGHTS", raising=False)
    return tmp_path


@pytest.fixture(scope="module")
def random_codecs():
    return {spec: create(spec) for spec in PUBLISHED}


@pytest.mark.parametrize("spec", list(PUBLISHED))
def test_shapes_frame_rates_and_measured_kbps_of_the_published_configurations(random_codecs, spec):
    rate, codebooks, size, frame_rates, whole = PUBLISHED[spec]
    codec = random_codecs[spec]
    assert (codec.sample_rate, codec.codebooks, codec.model.codebook_size) == (rate, codebooks, size)
    assert [g.frame_rate for g in codec.model.groups(codebooks)] == pytest.approx(frame_rates)
    frames = max(2, round(0.5 * rate / whole))
    wav = np.random.default_rng(0).standard_normal((1, frames * whole)).astype(np.float32) * 0.1
    encoded = codec.encode(wav, rate)
    seconds = wav.shape[1] / rate
    # every group carries seconds x its frame rate frames: the frame rate is real, not declared
    shapes = encoded.metadata["group_shapes"]
    assert [cols for _, cols in shapes] == [round(seconds * f) for f in frame_rates]
    bits = sum(rows * cols for rows, cols in shapes) * math.log2(size)
    nominal = sum(rows * math.log2(size) * f for (rows, _), f in zip(shapes, frame_rates)) / 1000
    assert sum(rows for rows, _ in shapes) == codebooks
    assert bits / seconds / 1000 == pytest.approx(nominal, rel=1e-9)
    assert nominal == pytest.approx(codec.model.nominal_kbps(codec.codebooks), rel=1e-9)
    # the payload is those bits, rounded up to whole bytes per group
    assert encoded.measured_kbps == pytest.approx(nominal, abs=8 * len(shapes) / seconds / 1000)
    decoded, decoded_rate = codec.decode(encoded)
    assert decoded_rate == rate and decoded.shape == wav.shape and decoded.dtype == np.float32
    assert np.isfinite(decoded).all()
    described = codec.describe()
    assert described["weights_source"] == "random" and "RANDOM" in described["weights_in_words"]


def _stated_bitrates(variant: catalogue.Variant) -> tuple[str, list[float]]:
    """The bitrates a variant states in words (``0.5-6 kbps (...)``, ``1.5, 3, 6, 12 kbps (...)``): the text before
    "kbps", and its numbers."""
    head = variant.bitrates.split(" kbps")[0]
    return head, [float(number) for number in re.split(r"-|, ", head)]


@pytest.mark.parametrize("spec", list(PUBLISHED))
def test_the_bitrates_stated_in_words_are_what_the_codebooks_give(random_codecs, spec):
    """``--list`` and the README's codec table state each variant's bitrates as text; they must be the model's own:
    the lowest and highest for a range, every one for a list."""
    variant = catalogue.parse(CodecSpec.parse(spec))[0]
    model = random_codecs[spec].model
    rates = [model.nominal_kbps(count) for count in model.codebook_choices]
    head, stated = _stated_bitrates(variant)
    # 1 %: the words round 44100 / 512 x 10 bits to 0.86 and SNAC's 0.984 kbps to 0.98
    assert stated == pytest.approx([min(rates), max(rates)] if "-" in head else rates, rel=0.01), head


def test_the_readme_codec_table_lists_every_codec_as_its_catalogue_does():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    rows = [line for line in readme.splitlines() if re.match(r"\| `[a-z0-9]+[:`]", line)]
    firsts = [row.split("|")[1] for row in rows]
    # the codecs a user's process knows: this one may also hold test plugins (tests/eval/toy_codec.py)
    shipped = subprocess.run([sys.executable, "-c", "from codec.base import known_codecs; print(*known_codecs())"],
                             capture_output=True, text=True, check=True).stdout.split()
    assert "opus" in shipped
    for name in shipped:
        assert any(re.search(rf"`{name}[:`]", first) for first in firsts), f"{name} has no row in the README table"
    for variants in catalogue.CODECS.values():
        for variant in variants.values():
            default = catalogue.default_variants()[variant.codec] == variant.name
            names = [f"`{variant.codec}:{variant.name}`"] + ([f"`{variant.codec}`"] if default else [])
            row = next((r for r, first in zip(rows, firsts) if any(n in first for n in names)), None)
            assert row is not None, f"{' or '.join(names)} has no row in the README table"
            cells = [cell.strip() for cell in row.split("|")[1:-1]]
            head, _ = _stated_bitrates(variant)
            assert cells[1].startswith(head), (cells, variant.bitrates)
            assert cells[2].startswith(f"{variant.sample_rate / 1000:g} kHz"), cells
            assert variant.hub.repo_id in cells[4] and cells[5].startswith(variant.hub.licence), cells
            assert cells[6].startswith("neural"), cells


@pytest.mark.parametrize("spec, kbps, codebooks, warns", [
    ("dac:16khz-random", 6.0, 12, False), ("dac:16khz-random", 1.5, 3, False), ("dac:24khz-random", 24.0, 32, False),
    ("dac:44khz-random", 8.0, 9, True), ("dac:44khz-random", 3.0, 3, True), ("mimi:random", 1.1, 8, False),
    ("snac:24khz-random", 0.98, 3, False), ("vocos:random", 1.5, 2, False), ("vocos:random", 12.0, 16, False),
])
def test_bw_maps_to_codebooks_and_says_when_it_cannot_match(random_codecs, spec, kbps, codebooks, warns):
    count, warning = choose_codebooks(random_codecs[spec].model, spec, kbps)
    assert count == codebooks
    assert bool(warning) == warns
    if warns:
        assert f"asked for {kbps:g} kbps" in warning and f"({codebooks} codebooks)" in warning


@pytest.mark.parametrize("spec, kbps", [("dac:16khz-random", 12.0), ("dac:44khz-random", 0.5),
                                        ("snac:24khz-random", 6.0), ("mimi:random", 6.0), ("vocos:random", 24.0)])
def test_a_bitrate_outside_the_codec_is_an_error_listing_its_bitrates(random_codecs, spec, kbps):
    with pytest.raises(CodecError, match=r"outside what it codes .* its bitrates in kbps"):
        choose_codebooks(random_codecs[spec].model, spec, kbps)


def test_an_unmet_request_warns_and_records_the_measured_bitrate(random_codecs):
    codec = create("dac:44khz-random@8")
    wav = np.random.default_rng(1).standard_normal((1, 44100 // 2)).astype(np.float32) * 0.1
    with pytest.warns(UserWarning, match="asked for 8 kbps; the nearest bitrate at or below it is 7.75 kbps"):
        encoded = codec.encode(wav, 44100)
    assert encoded.metadata["bitrate_request_met"] is False
    assert f"measured {encoded.measured_kbps:.3g} kbps" in encoded.metadata["bitrate_warning"]


def test_without_weights_one_line_says_what_to_fetch_and_where(no_weights):
    for spec in ("dac:44khz@6", "snac", "mimi", "vocos@6"):
        with pytest.raises(WeightsNotFoundError) as caught:
            create(spec)
        message = str(caught.value)
        assert "\n" not in message and "--download-weights" in message and "ENCODEC_EVAL_HUB_WEIGHTS" in message
    assert "descript/dac_44khz" in catalogue.missing_weights("dac:44khz@6")
    assert set(catalogue.without_weights()) == {"dac:16khz", "dac:24khz", "dac:44khz", "snac:24khz", "mimi:24khz",
                                                "vocos:encodec24khz"}


@pytest.fixture
def fake_hub(no_weights, monkeypatch):
    """Tiny checkpoints of every neural codec in a fake Hugging Face cache (and EnCodec in a fake torch hub)."""
    cache, torch_home = no_weights / "hf" / "hub", no_weights / "torch"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    return cache, write_all(cache, torch_home)


def _decode_directly(spec: str, network, codes):
    with torch.inference_mode():
        if spec.startswith("dac"):
            return network.decode(audio_codes=codes[0][None]).audio_values.reshape(-1)
        if spec == "mimi":
            return network.decode(codes[0][None]).audio_values.reshape(-1)
        if spec == "snac":
            torch.manual_seed(0)  # SNAC's decoder adds noise; the codec seeds it with 0 on every call
            return network.decode(codes).reshape(-1)
        return None


@pytest.mark.parametrize("spec", ["dac:16khz", "dac:24khz", "dac:44khz", "snac", "mimi", "vocos"])
def test_a_checkpoint_in_the_hugging_face_cache_loads_through_the_real_path(fake_hub, spec):
    cache, networks = fake_hub
    codec = create(spec)
    described = codec.describe()
    repo = catalogue.parse(CodecSpec.parse(spec))[0].hub
    folder = cache / f"models--{repo.repo_id.replace('/', '--')}" / "snapshots" / REVISION
    assert described["weights"].startswith(f"hub cache: {repo.repo_id}@{REVISION}")
    assert described["weights_sha256"] == sha256_of(folder / repo.weights_file)
    assert described["weights_licence"].startswith("mit")  # read from the card in the folder
    assert "model card" in described["weights_licence_source"]
    # the loaded network is the saved one: same codes decode to the same audio
    rate = codec.sample_rate
    wav = np.random.default_rng(2).standard_normal((1, rate // 2)).astype(np.float32) * 0.1
    encoded = codec.encode(wav, rate)
    decoded, _ = codec.decode(encoded)
    codes = [torch.from_numpy(np.asarray(c)) for c in _codes(codec, encoded)]
    direct = _decode_directly(spec, networks[spec], codes)
    if direct is not None:  # (transformers' 16 and 24 kHz DAC decoders give 8 samples less; the codec pads zeros)
        common = min(decoded.shape[1], direct.numel())
        assert common >= decoded.shape[1] - 8
        assert np.allclose(decoded[0, :common], direct.numpy()[:common], atol=1e-6)
    else:  # vocos: the decoder's weights are the saved ones
        saved = networks["vocos"].state_dict()
        loaded = codec.model.decoder.state_dict()
        assert all(torch.equal(saved[key], loaded[key]) for key in saved)


def _codes(codec, encoded):
    from codec.bits import packed_size, unpack_codes

    out, offset = [], 0
    for rows, cols in encoded.metadata["group_shapes"]:
        size = packed_size(rows * cols, codec.model.bits)
        flat = unpack_codes(encoded.payload[offset:offset + size], rows * cols, codec.model.bits)
        out.append(flat.reshape(rows, cols))
        offset += size
    return out


def test_a_local_folder_is_searched_before_the_cache(fake_hub, tmp_path, monkeypatch):
    cache, _ = fake_hub
    local = tmp_path / "local"
    shutil.copytree(cache / "models--kyutai--mimi" / "snapshots" / REVISION, local / "kyutai" / "mimi")
    (local / "kyutai" / "mimi" / "README.md").unlink()
    monkeypatch.setenv("ENCODEC_EVAL_HUB_WEIGHTS", str(local))
    described = create("mimi").describe()
    assert described["weights"] == "local folder: kyutai/mimi@local copy"
    # no card in the folder: the licence the project recorded, and where it was read
    assert described["weights_licence"] == "CC-BY-4.0" and "kyutai-labs/moshi" in described["weights_licence_source"]


@pytest.fixture
def tiny_set(tmp_path):
    """One 1.2 s speech item of the default set."""
    wav, sr = audio.load(DATA / "speech_clean" / "cmu_arctic_a0007_16k.wav")
    folder = tmp_path / "tiny" / "speech_clean"
    folder.mkdir(parents=True)
    audio.save(folder / "arctic.wav", wav[:, : int(1.2 * sr)], sr)
    return folder.parent


def test_encodec_bench_runs_every_neural_codec_on_a_tiny_set(fake_hub, tiny_set, tmp_path, capsys):
    from encodec_eval.cli import main

    out = tmp_path / "run"
    code = main(["--codecs", "dac:16khz@6,dac:24khz@3,dac:44khz@0.861,snac@0.98,mimi@1.1,vocos@6", "--data",
                 str(tiny_set), "--metrics", "si_snr_db,dnsmos_ovrl@16k", "--repeats", "0", "--workers", "1",
                 "--out", str(out), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    rows = [json.loads(line) for line in (out / "rows.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and all(row["status"] == "ok" for row in rows), [row["error"] for row in rows]
    for row in rows:
        info = row["codec_info"]
        assert info["weights"].startswith("hub cache: ") and REVISION in info["weights"]
        assert info["weights_licence"] and info["weights_sha256"]
        assert row["kbps_measured"] == pytest.approx(info["nominal_kbps"], rel=0.1)
        assert 1.0 <= row["dnsmos_ovrl@16k"] <= 5.0  # the MOS predictor scored the decoded speech
    run = json.loads((out / "run.json").read_text())
    assert run["neural_codecs_without_weights"] == {}
    dnsmos = run["metrics"]["dnsmos_ovrl@16k"]  # which predictor models scored: their files' digests and version
    assert sorted(dnsmos["model_sha256"]) == sorted(DNSMOS_FILES) and dnsmos["version"] == "0.0.1.1"
    assert all(re.fullmatch(r"[0-9a-f]{64}", digest) for digest in dnsmos["model_sha256"].values())
    assert "not run for want of weights" not in capsys.readouterr().out


def test_the_default_run_names_the_codecs_skipped_for_want_of_weights(no_weights, tiny_set, tmp_path, capsys):
    from encodec_eval.cli import main

    out = tmp_path / "run"
    assert main(["--codecs", "opus@6", "--data", str(tiny_set), "--metrics", "si_snr_db", "--repeats", "0",
                 "--workers", "1", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert ("not run for want of weights: dac:16khz, dac:24khz, dac:44khz, mimi:24khz, snac:24khz, "
            "vocos:encodec24khz") in printed
    assert "--download-weights --codecs dac,mimi,snac,vocos" in printed
    missing = json.loads((out / "run.json").read_text())["neural_codecs_without_weights"]
    assert "descript/dac_16khz" in missing["dac:16khz"]


def test_encodec_bench_stops_with_one_line_per_codec_without_weights(no_weights, tiny_set, capsys):
    from encodec_eval.cli import main

    assert main(["--codecs", "dac,opus", "--data", str(tiny_set), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("encodec-bench: error: dac:44khz") and "descript/dac_44khz" in err[0]


def test_importing_vocos_leaves_no_placeholder_torchaudio_behind(official_encodec):
    """The official encodec oracle (with the test stand-in for torchaudio) is imported first, as in a test session;
    importing vocos through its placeholder must leave both as they were."""
    import sys

    from codec.neural import vocos as adapter

    before = {name: sys.modules[name] for name in ("torchaudio", "encodec")}
    for name in [n for n in sys.modules if n.split(".")[0] == "vocos"]:
        del sys.modules[name]
    adapter.vocos_package.cache_clear()
    package = adapter.vocos_package()
    assert package.Vocos.__module__ == "vocos.pretrained"
    assert {name: sys.modules[name] for name in before} == before
    assert "torchaudio.functional.functional" not in sys.modules
    assert official_encodec.EncodecModel is sys.modules["encodec"].EncodecModel
    with pytest.raises(RuntimeError, match="torchaudio is not installed"):
        sys.modules["vocos.heads"]._hz_to_mel(440.0)


def test_list_names_each_neural_codec_with_its_weights(no_weights, capsys):
    from encodec_eval.cli import main

    assert main(["--list"]) == 0
    printed = capsys.readouterr().out
    assert ("dac:44khz: 44100 Hz, 0.86-7.75 kbps (1-9 codebooks x 0.861); weights descript/dac_44khz (missing)"
            in printed)
    assert "plcmos@16k_ref" in printed
