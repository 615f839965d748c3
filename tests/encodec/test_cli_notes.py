"""What the ``encodec`` command says when it cannot do, or does not do, what the input suggests."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from codec.encodec.cli import main


@pytest.fixture
def stereo_48k(tmp_path):
    path = tmp_path / "in.wav"
    sf.write(path, 0.1 * np.random.default_rng(0).standard_normal((24000, 2)), 48000, subtype="PCM_16")
    return path


def test_an_unsupported_bandwidth_lists_the_supported_ones(stereo_48k, capsys):
    assert main(["--weights", "encodec_eval_24khz", "-b", "24", str(stereo_48k)]) == 1
    err = capsys.readouterr().err
    assert "Bandwidth 24 is not supported by the model encodec_eval_24khz; it supports 1.5, 3, 6, 12" in err


def test_a_converted_input_is_said_once_on_stderr(stereo_48k, tmp_path, capsys):
    out = tmp_path / "out.wav"
    assert main(["--weights", "encodec_eval_24khz", str(stereo_48k), str(out)]) == 0
    err = capsys.readouterr().err
    assert (f"{stereo_48k} is 48000 Hz stereo; encodec_eval_24khz codes 24000 Hz mono, so {out} is 24000 Hz mono; "
            "-q/--hq codes 48 kHz stereo") in err
    assert sf.info(str(out)).samplerate == 24000 and sf.info(str(out)).channels == 1


def test_the_fallback_note_says_what_download_weights_fetches(stereo_48k, tmp_path, offline, capsys):
    assert main([str(stereo_48k), str(tmp_path / "x.ecdc")]) == 0
    err = capsys.readouterr().err
    assert "using the project's encodec_eval_24khz" in err
    assert "`encodec --download-weights` fetches Meta's official weights" in err
