"""MP3: LAME (lameenc) to encode, libsndfile's mpg123 (soundfile) to decode; the paper's 64 kbps music reference.

Spec: ``mp3[:options]@kbps``, constant bitrate; the request goes to the nearest MPEG Layer III bitrate (8-320 kbps,
in ``metadata["mp3_kbps"]``). Options: ``mono`` or ``stereo`` (default: the input's, at most 2), ``q0``..``q9`` LAME
quality (default 2). Input is converted to 48 kHz; LAME then picks its own output rate for the bitrate, as the
``lame`` command does (64 kbps stereo is coded at 24 kHz), recorded in ``metadata["mp3_sample_rate"]``; decode
resamples back to 48 kHz.

Delay: LAME's encoder delay (576) plus the decoder's (529) put the decoded audio 1105 samples (at the MP3's rate)
late, and the stream carries no gapless tag that libsndfile would honour; decode removes them and the padding of
the last frame (``padding_samples_at_mp3_rate``), so the output is time-aligned and as long as the input.
``latency_samples`` adds one MP3 frame of buffering.
"""

from __future__ import annotations

import io
import re
from importlib.metadata import version
from typing import Any

import numpy as np
import soundfile as sf

from codec.audio import resample
from codec.base import Codec, CodecError, CodecSpec, Encoded, register
from codec.baselines.rate import rate_report, unknown_option

SAMPLE_RATE = 48000
# MPEG-1, -2 and -2.5 Layer III bitrates together; LAME moves to MPEG-2/2.5 (lower rates) for the low ones.
BITRATES_KBPS = (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160, 192, 224, 256, 320)
CODEC_DELAY = 576 + 529
DEFAULT_KBPS = 64.0
OPTIONS_HELP = "mono|stereo, q0..q9"


def _lameenc():
    try:
        import lameenc
    except ImportError as exc:
        raise CodecError(f"mp3 needs lameenc (pip install lameenc); import failed: {exc}") from exc
    if "MP3" not in sf.available_formats():
        raise CodecError(f"mp3 decoding needs libsndfile >= 1.1 with MP3 support; soundfile has "
                         f"{sf.__libsndfile_version__} without it")
    return lameenc


def nearest_bitrate(kbps: float) -> int:
    """The Layer III bitrate closest to ``kbps``."""
    return min(BITRATES_KBPS, key=lambda rate: abs(rate - kbps))


class Mp3Codec(Codec):
    """LAME at one constant bitrate."""

    name = "mp3"
    sample_rate = SAMPLE_RATE
    max_channels = 2

    def __init__(self, kbps: float = DEFAULT_KBPS, quality: int = 2, channels: int | None = None) -> None:
        self.lameenc = _lameenc()
        if not 0 <= quality <= 9:
            raise CodecError(f"mp3: LAME quality must be 0..9, got {quality}")
        if channels not in (None, 1, 2):
            raise CodecError(f"mp3: codes 1 or 2 channels, not {channels}")
        if kbps <= 0:
            raise CodecError(f"mp3: bitrate must be positive, got {kbps:g} kbps")
        self.requested_kbps, self.quality, self.channels = kbps, quality, channels
        self.mp3_kbps = nearest_bitrate(kbps)
        self._formats: dict[int, tuple[int, str]] = {}

    def _lame(self, channels: int) -> bytes:
        encoder = self.lameenc.Encoder()
        encoder.set_bit_rate(self.mp3_kbps)
        encoder.set_in_sample_rate(SAMPLE_RATE)
        encoder.set_channels(channels)
        encoder.set_quality(self.quality)
        return encoder

    def _encode_pcm(self, wav: np.ndarray) -> bytes:
        encoder = self._lame(wav.shape[0])
        pcm = np.round(np.clip(wav, -1, 32767 / 32768) * 32768).astype("<i2").T
        return bytes(encoder.encode(np.ascontiguousarray(pcm).tobytes()) + encoder.flush())

    def _stream_format(self, channels: int) -> tuple[int, str]:
        """LAME's output rate and version for this setting, from a tenth of a second of silence (then cached)."""
        if channels not in self._formats:
            stream = self._encode_pcm(np.zeros((channels, SAMPLE_RATE // 10), dtype=np.float32))
            tag = re.search(rb"LAME\d+\.\d+", stream)
            self._formats[channels] = (sf.info(io.BytesIO(stream)).samplerate,
                                       tag.group().decode() if tag else "LAME (unknown version)")
        return self._formats[channels]

    def _latency(self, channels: int) -> int:
        mp3_rate = self._stream_format(channels)[0]
        frame = 1152 if mp3_rate >= 32000 else 576
        return round((CODEC_DELAY + frame) * SAMPLE_RATE / mp3_rate)

    @property
    def latency_samples(self) -> int:
        """At 48 kHz, for stereo when the channels follow the input (exact per item: ``metadata``)."""
        return self._latency(self.channels or 2)

    def encode(self, wav: np.ndarray, sample_rate: int) -> Encoded:
        prepared = self.prepare(wav, sample_rate)
        stream = self._encode_pcm(prepared.wav)
        info = sf.info(io.BytesIO(stream))
        wanted = round(prepared.num_samples * info.samplerate / SAMPLE_RATE)
        encoded = prepared.encoded(stream, {
            "mp3_kbps": self.mp3_kbps,
            "mp3_sample_rate": info.samplerate,
            "delay_compensated_samples_at_mp3_rate": CODEC_DELAY,
            "padding_samples_at_mp3_rate": info.frames - CODEC_DELAY - wanted,
            "latency_samples": self._latency(prepared.channels),
            "bitrate_note": "the MP3 file: frames with their headers, no ID3 or gapless tag",
        })
        why = f"nearest MP3 bitrate is {self.mp3_kbps} kbps"
        encoded.metadata.update(rate_report(f"mp3@{self.requested_kbps:g}", self.requested_kbps,
                                            encoded.measured_kbps, why))
        return encoded

    def decode(self, encoded: Encoded) -> tuple[np.ndarray, int]:
        self.check_encoded(encoded)
        try:
            data, mp3_rate = sf.read(io.BytesIO(encoded.payload), dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
            raise CodecError(f"mp3: cannot decode the payload ({exc})") from exc
        if data.shape[1] != encoded.channels:
            raise CodecError(f"mp3: stream has {data.shape[1]} channels, expected {encoded.channels}")
        wanted = round(encoded.num_samples * mp3_rate / SAMPLE_RATE)
        aligned = data[CODEC_DELAY:CODEC_DELAY + wanted].T
        out = resample(np.ascontiguousarray(aligned), mp3_rate, SAMPLE_RATE)[:, :encoded.num_samples]
        if out.shape[1] < encoded.num_samples:
            out = np.pad(out, ((0, 0), (0, encoded.num_samples - out.shape[1])))
        return np.ascontiguousarray(out, dtype=np.float32), SAMPLE_RATE

    def describe(self) -> dict[str, Any]:
        lame = self._stream_format(self.channels or 2)[1]
        return {**super().describe(), "implementation": f"{lame} via lameenc {version('lameenc')}; decoder "
                f"libsndfile {sf.__libsndfile_version__} (mpg123) via soundfile {sf.__version__}",
                "mp3_kbps": self.mp3_kbps, "requested_kbps": self.requested_kbps, "quality": self.quality,
                "mode": "CBR"}


@register("mp3")
def _mp3(spec: CodecSpec) -> Mp3Codec:
    settings: dict[str, Any] = {}
    for option in spec.options:
        if option in ("mono", "stereo"):
            settings["channels"] = 1 if option == "mono" else 2
        elif option[0] == "q" and option[1:].isdigit():
            settings["quality"] = int(option[1:])
        else:
            raise unknown_option("mp3", option, OPTIONS_HELP)
    return Mp3Codec(spec.kbps if spec.kbps is not None else DEFAULT_KBPS, **settings)
