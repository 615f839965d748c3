"""The tokenizer (codec/encodec/tokenize.py): exact-mode codes equal the official package's per file however files
are batched, fast mode reports its difference, and folders and manifests are coded resumably with errors recorded."""

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from codec.encodec.checkpoints import OFFICIAL_FILES, load_model
from codec.encodec.tokenize import (
    CHECK_NAME,
    MANIFEST_NAME,
    ItemCodes,
    TokenizeError,
    Tokenizer,
    compare_modes,
    list_inputs,
    main,
    read_codes,
    tokenize_files,
)
from testkit.oracles import randomize_official

LENGTHS = {  # samples: whole frames (320 samples) or not, equal lengths, shorter than the frames recomputed alone
    "encodec_24khz": [24123, 20011, 12800, 9600, 7001, 7001, 3000, 641, 100],
    # 1 s segments of several files share batches; last segments of 52480, 11600 and 30000 samples
    "encodec_48khz": [100000, 48000, 60000, 30000],
}


def official_pair(name, tmp_path_factory):
    """(official model, ours loaded from its weights written as an official .th file, that file)."""
    from testkit.oracles import official_encodec

    official = official_encodec()
    build = {"encodec_24khz": official.EncodecModel.encodec_model_24khz,
             "encodec_48khz": official.EncodecModel.encodec_model_48khz}[name]
    reference = randomize_official(build(pretrained=False), seed=1)
    path = tmp_path_factory.mktemp("weights") / OFFICIAL_FILES[name]
    torch.save(reference.state_dict(), path)
    return reference, load_model(path), path


@pytest.fixture(scope="module", params=list(LENGTHS))
def pair(request, tmp_path_factory):
    return official_pair(request.param, tmp_path_factory)


@pytest.fixture(scope="module")
def model_24k(tmp_path_factory):
    return official_pair("encodec_24khz", tmp_path_factory)


def signals_for(model, lengths, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [0.1 * torch.randn(model.channels, n, generator=gen) for n in lengths]


def official_codes(reference, signal, bandwidth):
    reference.set_target_bandwidth(bandwidth)
    with torch.no_grad():
        frames = reference.encode(signal[None])
    codes = torch.cat([codes for codes, _ in frames], dim=-1)[0]
    scales = None if frames[0][1] is None else torch.cat([scale.view(1) for _, scale in frames])
    return codes, scales


def test_exact_codes_equal_the_official_codes_of_each_file_alone(pair):
    reference, ours, _ = pair
    signals = signals_for(ours, LENGTHS[ours.config.name])
    tokenizer = Tokenizer(ours, 6.0, "exact", batch_size=4)
    batches = list(tokenizer.batches(tokenizer._units(signals)))
    # the batching under test: padded inputs share a batch (24 kHz) or several files' segments do (48 kHz)
    assert any(len({u.audio.shape[-1] for u in b}) > 1 or len({u.item for u in b}) > 1 for b in batches)
    for signal, item in zip(signals, tokenizer.encode(signals)):
        codes, scales = official_codes(reference, signal, 6.0)
        assert torch.equal(item.codes, codes), f"codes differ for a {signal.shape[-1]}-sample file"
        assert item.codes.shape[-1] == sum(item.segment_frames)
        if scales is None:
            assert item.scales is None
        else:
            assert torch.equal(item.scales, scales)


def test_exact_mode_pads_only_causal_models(pair):
    _, ours, _ = pair
    tokenizer = Tokenizer(ours, 6.0, "exact", batch_size=16)
    batches = list(tokenizer.batches(tokenizer._units(signals_for(ours, LENGTHS[ours.config.name]))))
    if ours.config.causal:
        assert any(len({unit.audio.shape[-1] for unit in batch}) > 1 for batch in batches)  # lengths padded together
    else:
        assert all(len({unit.audio.shape[-1] for unit in batch}) == 1 for batch in batches)


def test_exact_mode_on_several_cpu_threads_pads_nothing(pair):
    _, ours, _ = pair
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        tokenizer = Tokenizer(ours, 6.0, "exact", batch_size=16)
        batches = list(tokenizer.batches(tokenizer._units(signals_for(ours, LENGTHS[ours.config.name]))))
    finally:
        torch.set_num_threads(threads)
    assert all(len({unit.audio.shape[-1] for unit in batch}) == 1 for batch in batches)


def test_fast_mode_batches_any_lengths_and_its_difference_is_measured(pair):
    _, ours, _ = pair
    signals = signals_for(ours, LENGTHS[ours.config.name], seed=2)
    fast = Tokenizer(ours, 6.0, "fast", batch_size=16)
    if ours.config.segment is None:  # lengths padded together (as far as MAX_PADDING allows)
        assert any(len({u.audio.shape[-1] for u in batch}) > 1 for batch in fast.batches(fast._units(signals)))
    fast_codes = fast.encode(signals)
    exact_codes = Tokenizer(ours, 6.0, "exact", batch_size=16).encode(signals)
    assert [f.codes.shape for f in fast_codes] == [e.codes.shape for e in exact_codes]
    same = compare_modes(ours, signals, exact_codes, exact_codes)
    assert same.code_diff_fraction == 0 and same.si_snr_db_min == float("inf")
    measured = compare_modes(ours, signals, fast_codes, exact_codes)
    differ = sum(int((f.codes != e.codes).sum()) for f, e in zip(fast_codes, exact_codes))
    assert measured.code_diff_fraction == differ / sum(e.codes.numel() for e in exact_codes)
    assert 0 < measured.code_diff_fraction < 1  # bfloat16 moves some codes of these random weights, not all
    assert np.isfinite(measured.si_snr_db_mean) and measured.si_snr_db_min <= measured.si_snr_db_mean


def test_bad_settings_are_refused(pair):
    _, ours, _ = pair
    with pytest.raises(TokenizeError, match="unknown mode"):
        Tokenizer(ours, 6.0, "quick")
    with pytest.raises(TokenizeError, match="fast"):
        Tokenizer(ours, 6.0, "exact", compile_mode="default")
    with pytest.raises(ValueError, match="bandwidth"):
        Tokenizer(ours, 5.0)
    with pytest.raises(TokenizeError, match=r"expected \[%d, samples\]" % ours.channels):
        Tokenizer(ours, 6.0).encode([torch.zeros(3, 100)])


# ---- files ----------------------------------------------------------------------------------------------------
def write_folder(root, sample_rate=24000):
    """Four readable files (one stereo at 44.1 kHz, in a subfolder) and one that is not audio."""
    gen = np.random.default_rng(0)
    files = {"a.wav": (5000, 1, sample_rate), "b.flac": (12800, 1, sample_rate), "c.wav": (7001, 1, sample_rate),
             "sub/d.wav": (9000, 2, 44100)}
    for name, (n, channels, sr) in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        sf.write(root / name, 0.1 * gen.standard_normal((n, channels)), sr, subtype="FLOAT" if name.endswith(
            ".wav") else "PCM_24")
    (root / "broken.wav").write_bytes(b"RIFF not really a wave file")
    return files


def test_folder_to_npz_files_and_manifest(model_24k, tmp_path):
    import pandas as pd

    from codec import audio

    _, ours, _ = model_24k
    files = write_folder(tmp_path / "in")
    summary = tokenize_files(tmp_path / "in", tmp_path / "out", ours, 6.0, num_workers=0, batch_size=3,
                             progress=False)
    assert (summary.coded, summary.skipped, summary.failed) == (4, 0, 1)
    manifest = pd.read_json(tmp_path / "out" / MANIFEST_NAME, lines=True)
    assert len(manifest) == 5
    broken = manifest[manifest.path.str.endswith("broken.wav")].iloc[0]
    assert broken.status == "error" and "broken.wav" in broken.error
    for name in files:
        wav, sr = audio.load(tmp_path / "in" / name)
        wav = torch.from_numpy(audio.convert(wav, sr, 24000, 1))
        codes, meta = read_codes(tmp_path / "out" / name.replace(".wav", ".npz").replace(".flac", ".npz"))
        expected = Tokenizer(ours, 6.0).encode([wav])[0]
        assert torch.equal(codes.codes, expected.codes)
        assert meta == {"sample_rate": 24000, "frame_rate": 75, "channels": 1, "samples": wav.shape[-1],
                        "bandwidth_kbps": 6.0, "model": "encodec_24khz", "mode": "exact"}
        row = manifest[manifest.path.str.endswith(name)].iloc[0]
        assert row.status == "ok" and row.frames == codes.codes.shape[-1] and row.n_q == 8
        with torch.no_grad():
            assert torch.equal(ours.decode(codes.frames()), ours.decode(ours.encode(wav[None], 6.0)))
    assert np.load(tmp_path / "out" / "a.npz")["codes"].dtype == np.int16


def test_runs_resume_and_refuse_other_settings(model_24k, tmp_path):
    _, ours, _ = model_24k
    write_folder(tmp_path / "in")
    out = tmp_path / "out"
    tokenize_files(tmp_path / "in", out, ours, 6.0, num_workers=0, progress=False)
    before = (out / "b.npz").stat().st_mtime_ns
    (out / "a.npz").unlink()
    again = tokenize_files(tmp_path / "in", out, ours, 6.0, num_workers=0, progress=False)
    assert (again.coded, again.skipped, again.failed) == (1, 3, 1)  # the broken file is retried, fails again
    assert (out / "a.npz").is_file() and (out / "b.npz").stat().st_mtime_ns == before
    rows = [json.loads(line) for line in (out / MANIFEST_NAME).read_text().splitlines()]
    assert len(rows) == 5 and len({r["path"] for r in rows}) == 5  # compacted: one row per file
    with pytest.raises(TokenizeError, match="other settings"):
        tokenize_files(tmp_path / "in", out, ours, 12.0, num_workers=0, progress=False)


def test_manifests_list_files(model_24k, tmp_path):
    _, ours, _ = model_24k
    write_folder(tmp_path / "in")
    (tmp_path / "in" / "list.txt").write_text("# a comment\na.wav\nsub/d.wav\nmissing.wav\n")
    summary = tokenize_files(tmp_path / "in" / "list.txt", tmp_path / "out_txt", ours, 6.0, num_workers=0,
                             progress=False)
    assert (summary.coded, summary.failed) == (2, 1)
    assert (tmp_path / "out_txt" / "sub" / "d.npz").is_file()
    rows = {json.loads(line)["path"]: json.loads(line) for line in
            (tmp_path / "out_txt" / MANIFEST_NAME).read_text().splitlines()}
    assert rows[str(tmp_path / "in" / "missing.wav")]["status"] == "error"
    (tmp_path / "list.csv").write_text(f"path,speaker\n{tmp_path / 'in' / 'c.wav'},x\n")
    summary = tokenize_files(tmp_path / "list.csv", tmp_path / "out_csv", ours, 6.0, num_workers=0, progress=False)
    assert summary.coded == 1 and (tmp_path / "out_csv" / "c.npz").is_file()
    (tmp_path / "bad.csv").write_text("file\nc.wav\n")
    with pytest.raises(TokenizeError, match="'path' column"):
        tokenize_files(tmp_path / "bad.csv", tmp_path / "out_bad", ours, 6.0, progress=False)


def test_folders_say_what_they_skipped(tmp_path):
    write_folder(tmp_path)
    (tmp_path / "loop").symlink_to(tmp_path)  # a link back to the folder: no endless walk
    (tmp_path / "dangling.wav").symlink_to(tmp_path / "nowhere.wav")
    with pytest.warns(UserWarning, match=r"2 path\(s\) under .* skipped"):
        paths = list_inputs(tmp_path)
    assert sorted(p.name for p in paths) == ["a.wav", "b.flac", "broken.wav", "c.wav", "d.wav"]


def test_command_line_fast_mode_with_background_workers(model_24k, tmp_path, capsys):
    _, ours, weights = model_24k
    write_folder(tmp_path / "in")
    status = main([str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-w", str(weights), "--mode", "fast",
                   "--num-workers", "2", "--check-items", "2", "--device", "cpu", "-q"])
    assert status == 1  # one file failed, the rest were coded
    out = capsys.readouterr().out
    assert "4 files coded" in out and "1 failed" in out and "codes differ" in out
    check = json.loads((tmp_path / "out" / CHECK_NAME).read_text())
    assert check["items"] == 2 and 0 <= check["code_diff_fraction"] <= 1
    codes, meta = read_codes(tmp_path / "out" / "c.npz")
    assert meta["mode"] == "fast" and isinstance(codes, ItemCodes)
    assert main([str(tmp_path / "nowhere"), "-o", str(tmp_path / "o2"), "-w", str(weights), "-q"]) == 2
    assert "no such folder or manifest" in capsys.readouterr().err
