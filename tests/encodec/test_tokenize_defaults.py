"""``encodec-tokenize`` as the other commands behave: the project's model offline, one line for a missing device,
batches that do not drown short files in padding, and a speed that is never printed as 0."""

from __future__ import annotations

import shutil

import pytest
import torch

from codec.encodec.config import EncodecConfig
from codec.encodec.model import EncodecModel
from codec.encodec.tokenize import CHECK_SHARE, MAX_PADDING, Summary, Tokenizer, _check_sample, main
from encodec_eval.data import default_data_dir


@pytest.fixture
def folder(tmp_path):
    source = tmp_path / "in"
    source.mkdir()
    shutil.copy(default_data_dir() / "general" / "sonicpi_perc_till.flac", source / "till.flac")
    return source


def test_offline_it_falls_back_to_the_project_model_as_encodec_does(folder, tmp_path, offline, capsys):
    assert main([str(folder), "-o", str(tmp_path / "out"), "--num-workers", "0", "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert "encodec-tokenize: official weights not found; using the project's encodec_eval_24khz" in err
    assert "tokenize (exact)" not in err  # stderr is no terminal here: no progress bar in the log
    assert '"model": "encodec_eval_24khz"' in (tmp_path / "out" / "tokenizer.json").read_text()
    # naming Meta's model explicitly is an error, which says how to go on
    assert main([str(folder), "-o", str(tmp_path / "o2"), "--model", "encodec_24khz", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "official weights encodec_24khz-d7cc33bc.th not found" in err and "--model encodec_eval_24khz" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_a_missing_device_is_one_line(folder, tmp_path, capsys):
    assert main([str(folder), "-o", str(tmp_path / "out"), "--model", "encodec_eval_24khz", "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "encodec-tokenize: error: device 'cuda' is not available on this machine"


@pytest.mark.parametrize("mode", ["fast", "exact"])
def test_batches_of_the_default_set_hold_little_padding(mode):
    """The default set's durations (2.7 to 30 s): padded into one batch they cost 2.8 times their audio, which made
    fast mode four times slower than exact mode on a CPU."""
    torch.manual_seed(0)
    model = EncodecModel(EncodecConfig.encodec_24khz().with_(n_filters=4, lstm=0))
    seconds = [30.0, 20.0, 20.0, 13.5, 13.5, 10.8, 10.7, 10.0, 10.0, 10.0, 8.0, 8.0, 7.1, 6.7, 6.5, 6.0, 4.3, 4.0, 2.7]
    signals = [torch.zeros(1, int(s * 24000)) for s in seconds]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # exact mode pads on one CPU thread
    try:
        tokenizer = Tokenizer(model, 6.0, mode)
        batches = list(tokenizer.batches(tokenizer._units(signals)))
    finally:
        torch.set_num_threads(threads)
    audio = sum(unit.audio.shape[-1] for batch in batches for unit in batch)
    padded = sum(len(batch) * batch[0].audio.shape[-1] for batch in batches)
    assert padded <= (1 + MAX_PADDING) * audio
    assert any(len(batch) > 1 for batch in batches)  # files of similar lengths still share batches


def test_the_speed_keeps_three_significant_digits(tmp_path):
    summary = Summary(coded=2, skipped=0, failed=0, audio_seconds=2.0, wall_seconds=5.0, comparison=None)
    assert "2.0 s of audio in 5.0 s, 0.4 audio-s/s" in summary.lines(tmp_path)[0]


def test_the_fast_mode_check_codes_a_tenth_of_the_audio_unless_told_otherwise():
    """By default the check coded 10 of the default set's 19 files again and decoded them twice: 4 times the coding
    itself. It now takes at most CHECK_SHARE of the audio; an explicit --check-items is obeyed."""
    seconds = [30.0, 20.0, 20.0, 13.5, 13.5, 10.8, 10.7, 10.0, 10.0, 10.0, 8.0, 8.0, 7.1, 6.7, 6.5, 6.0, 4.3, 4.0, 2.7]
    durations = dict(enumerate(seconds))  # longest first, as tokenize_files orders them
    order = list(durations)
    chosen = _check_sample(order, durations, None)
    assert 1 <= len(chosen) and sum(durations[i] for i in chosen) <= CHECK_SHARE * sum(seconds)
    assert len(_check_sample(order, durations, 4)) == 4 and _check_sample(order, durations, 0) == set()
    assert len(_check_sample([0], {0: 30.0}, None)) == 1  # one long file: still checked
