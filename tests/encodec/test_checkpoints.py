"""Weights: where they are looked for, what happens when they are missing or broken, our own format."""

import pytest
import torch

from codec.encodec import checkpoints as ck
from codec.encodec.config import EncodecConfig
from codec.encodec.model import EncodecModel


def test_missing_official_weights_say_where_and_how(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("ENCODEC_WEIGHTS", raising=False)
    with pytest.raises(ck.WeightsNotFoundError) as err:
        ck.load_model("encodec_24khz")
    text = str(err.value)
    assert "encodec_24khz-d7cc33bc.th" in text and str(tmp_path / "torch") in text and "download=True" in text


def test_official_file_found_in_the_torch_hub_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    folder = tmp_path / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    torch.manual_seed(0)
    source = EncodecModel(EncodecConfig.encodec_24khz())
    ck.save_official(source, folder / "encodec_24khz-d7cc33bc.th")
    assert ck.find_official_checkpoint("encodec_24khz-d7cc33bc.th") == folder / "encodec_24khz-d7cc33bc.th"
    model = ck.load_model("encodec_24khz")
    x = torch.randn(1, 1, 1000)
    with torch.no_grad():
        assert torch.allclose(model(x), source.eval()(x), atol=1e-6)


def test_hf_cache_lookup(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    snap = tmp_path / "models--facebook--encodec_48khz" / "snapshots" / "abc123"
    ck.save_hf(EncodecModel(EncodecConfig.encodec_48khz()), snap)
    assert ck.find_hf_checkpoint("facebook/encodec_48khz") == snap
    assert ck.load_model("facebook/encodec_48khz").config.sample_rate == 48000
    with pytest.raises(ck.WeightsNotFoundError, match="facebook/encodec_32khz not found"):
        ck.load_model("facebook/encodec_32khz")


def test_strict_loading_names_the_mismatch(tmp_path):
    state = EncodecModel(EncodecConfig.encodec_24khz()).state_dict()
    state.pop("encoder.model.0.conv.conv.bias")
    state["extra.key"] = torch.zeros(1)
    path = tmp_path / "encodec_24khz-bad.th"
    torch.save(state, path)
    with pytest.raises(ck.CheckpointError, match=r"1 missing .*encoder.model.0.conv.conv.bias.*1 unexpected"):
        ck.load_model(path)


def test_wrong_model_for_the_weights(tmp_path):
    path = tmp_path / "encodec_24khz-x.th"
    torch.save(EncodecModel(EncodecConfig.encodec_48khz()).state_dict(), path)
    with pytest.raises(ck.CheckpointError):
        ck.load_model(path)


@pytest.mark.parametrize("content", [b"", b"not a torch file at all", b"PK\x03\x04garbage"])
def test_unreadable_files(tmp_path, content):
    path = tmp_path / "encodec_24khz-broken.th"
    path.write_bytes(content)
    with pytest.raises(ck.CheckpointError, match="cannot read weights"):
        ck.load_model(path)


def test_unknown_name():
    with pytest.raises(ck.WeightsNotFoundError, match="neither a known model"):
        ck.load_model("encodec_96khz")


def test_project_format_round_trip_in_float16(tmp_path):
    torch.manual_seed(0)
    config = EncodecConfig.encodec_24khz().with_(n_filters=8, lstm=0, name="tiny")
    source = EncodecModel(config)
    path = ck.save_project(source, tmp_path / "tiny.pt", dtype=torch.float16, metadata={"steps": 3},
                           inference_only=True)
    model = ck.load_model(path)
    assert model.config == config
    x = torch.randn(1, 1, 2000)
    with torch.no_grad():
        assert (model(x) - source.eval()(x)).abs().max() < 1e-2
    codebooks = 32 * 1024 * 128
    assert path.stat().st_size < 2 * (sum(p.numel() for p in source.parameters()) + codebooks) + 200_000
    full = ck.save_project(source, tmp_path / "full.pt")
    assert torch.equal(ck.load_model(full, fold=False).state_dict()["quantizer.vq.layers.3._codebook.embed_avg"],
                       source.state_dict()["quantizer.vq.layers.3._codebook.embed_avg"])


def test_folded_models_cannot_be_saved_with_weight_norm(tmp_path):
    model = EncodecModel(EncodecConfig.encodec_24khz()).fold_weight_norm()
    with pytest.raises(ck.CheckpointError, match="fold=False"):
        ck.save_official(model, tmp_path / "x.th")
    assert "encoder.model.0.conv.conv.weight" in model.state_dict()
