"""Real items from the embedded evaluation set, cut short so that every codec test stays quick."""

import pytest

from tests.codecs.signals import excerpt


@pytest.fixture(scope="session")
def speech_48k():
    return excerpt("speech_clean/alsa_channel_names_48k.wav")


@pytest.fixture(scope="session")
def speech_16k():
    return excerpt("speech_clean/codec2_speech_orig_16k.wav")


@pytest.fixture(scope="session")
def music_stereo_48k():
    return excerpt("music/fluidr3_render_k525_mvt1_48k.wav", start=2.0)


@pytest.fixture(scope="session")
def music_44k():
    return excerpt("music/music21_audioSearch_test_audio_44k.wav")
