"""Opus through libopus (opuslib): the paper's classic baseline at 6 and 12 kbps.

Spec: ``opus[:options]@kbps`` with options joined by ``-``: ``vbr`` (default) or ``cbr``; ``audio`` (default),
``voip`` or ``lowdelay``; ``c0``..``c10`` complexity (default 10); ``f2.5``, ``f5``, ``f10``, ``f20`` (default),
``f40`` or ``f60`` frame milliseconds; ``mono`` or ``stereo`` (default: the input's, at most 2). The codec runs at
48 kHz. The decoder's output is shifted back by the encoder's lookahead (``OPUS_GET_LOOKAHEAD``: 312 samples in
``audio`` and ``voip`` mode, 120 in ``lowdelay``), so decoded audio is time-aligned; the lookahead plus one frame is
the algorithmic latency, reported as ``latency_samples``.

Bitrate: the payload is the raw Opus packets; their lengths travel beside them (``metadata["packet_sizes"]``) as
RTP or Ogg would carry them, and are not counted, as in every published Opus bitrate
(``metadata["kbps_with_packet_lengths"]`` adds a self-delimiting length byte per packet, 0.4 kbps at 20 ms).
With VBR and 20 ms frames, libopus 1.3 does not go below about 4.1 kbps on speech (4.4-4.9 on music): such
requests are flagged (``bitrate_request_met``).
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

import numpy as np

from codec.base import Codec, CodecError, CodecSpec, Encoded, register
from codec.baselines.rate import rate_report, unknown_option

SAMPLE_RATE = 48000
APPLICATIONS = {"audio": "audio", "voip": "voip", "lowdelay": "restricted_lowdelay"}
FRAME_MS = (2.5, 5.0, 10.0, 20.0, 40.0, 60.0)
DEFAULT_KBPS = 12.0
OPTIONS_HELP = "vbr|cbr, audio|voip|lowdelay, c0..c10, f2.5|f5|f10|f20|f40|f60, mono|stereo"


def _opuslib():
    try:
        import opuslib
        import opuslib.api.info
    except Exception as exc:  # opuslib raises a bare Exception when libopus is missing
        raise CodecError("opus needs libopus (apt-get install libopus0) and opuslib (pip install opuslib); "
                         f"import failed: {exc}") from exc
    return opuslib


class OpusCodec(Codec):
    """libopus at one bitrate and setting."""

    name = "opus"
    sample_rate = SAMPLE_RATE
    max_channels = 2

    def __init__(self, kbps: float = DEFAULT_KBPS, vbr: bool = True, application: str = "audio",
                 complexity: int = 10, frame_ms: float = 20.0, channels: int | None = None) -> None:
        self.opuslib = _opuslib()
        if not 0.5 <= kbps <= 512:
            raise CodecError(f"opus: bitrate {kbps:g} kbps is outside libopus's range 0.5-512 kbps")
        if application not in APPLICATIONS:
            raise CodecError(f"opus: unknown application {application!r}; choose one of {', '.join(APPLICATIONS)}")
        if not 0 <= complexity <= 10:
            raise CodecError(f"opus: complexity must be 0..10, got {complexity}")
        if frame_ms not in FRAME_MS:
            raise CodecError(f"opus: frame size must be one of {FRAME_MS} ms, got {frame_ms:g}")
        if channels not in (None, 1, 2):
            raise CodecError(f"opus: codes 1 or 2 channels, not {channels}")
        self.kbps, self.vbr, self.application = kbps, vbr, application
        self.complexity, self.frame_ms, self.channels = complexity, frame_ms, channels
        self.frame_size = int(SAMPLE_RATE * frame_ms / 1000)
        self.lookahead = self._encoder(1).lookahead

    @property
    def spec(self) -> str:
        mode = "vbr" if self.vbr else "cbr"
        chans = {None: "", 1: "-mono", 2: "-stereo"}[self.channels]
        return f"opus:{mode}-{self.application}-c{self.complexity}-f{self.frame_ms:g}{chans}@{self.kbps:g}"

    @property
    def latency_samples(self) -> int:
        return self.frame_size + self.lookahead

    def _encoder(self, channels: int):
        encoder = self.opuslib.Encoder(SAMPLE_RATE, channels, APPLICATIONS[self.application])
        encoder.bitrate = int(round(self.kbps * 1000))
        encoder.vbr = int(self.vbr)
        encoder.complexity = self.complexity
        return encoder

    def encode(self, wav: np.ndarray, sample_rate: int) -> Encoded:
        prepared = self.prepare(wav, sample_rate)
        encoder = self._encoder(prepared.channels)
        # Lookahead zeros at the end let the decoder emit the last input samples; then whole frames.
        total = prepared.num_samples + self.lookahead
        frames = -(-total // self.frame_size)
        padded = np.zeros((prepared.channels, frames * self.frame_size), dtype=np.float32)
        padded[:, :prepared.num_samples] = prepared.wav
        interleaved = np.ascontiguousarray(padded.T)
        packets = [encoder.encode_float(interleaved[i * self.frame_size:(i + 1) * self.frame_size].tobytes(),
                                        self.frame_size) for i in range(frames)]
        sizes = [len(p) for p in packets]
        # Self-delimiting framing (RFC 6716 appendix B) would add 1 byte per packet (2 from 252 bytes on).
        length_bytes = sum(1 if size < 252 else 2 for size in sizes)
        encoded = prepared.encoded(b"".join(packets), {
            "packet_sizes": sizes,
            "kbps_with_packet_lengths": (sum(sizes) + length_bytes) * 8 / (prepared.num_samples / SAMPLE_RATE) / 1000,
            "lookahead_samples": self.lookahead,
            "delay_compensated": True,
            "frame_size": self.frame_size,
            "bitrate_note": "raw Opus packets; packet lengths are transport framing (RTP/Ogg), not counted",
        })
        floor = "libopus VBR has a floor near 4 kbps at 20 ms frames" if self.vbr else ""
        encoded.metadata.update(rate_report(self.spec, self.kbps, encoded.measured_kbps, floor))
        return encoded

    def decode(self, encoded: Encoded) -> tuple[np.ndarray, int]:
        self.check_encoded(encoded)
        sizes = encoded.metadata.get("packet_sizes")
        if not isinstance(sizes, list) or sum(sizes) != len(encoded.payload):
            raise CodecError("opus: packet_sizes in the metadata do not add up to the payload length")
        decoder = self.opuslib.Decoder(SAMPLE_RATE, encoded.channels)
        frame_size = encoded.metadata["frame_size"]
        chunks, offset = [], 0
        for size in sizes:
            packet = encoded.payload[offset:offset + size]
            offset += size
            try:
                pcm = decoder.decode_float(packet, frame_size)
            except self.opuslib.OpusError as exc:
                raise CodecError(f"opus: corrupt packet at byte {offset - size}: {exc}") from exc
            chunks.append(np.frombuffer(pcm, dtype=np.float32).reshape(-1, encoded.channels))
        decoded = np.concatenate(chunks).T
        start = encoded.metadata["lookahead_samples"]
        return np.ascontiguousarray(decoded[:, start:start + encoded.num_samples]), SAMPLE_RATE

    def describe(self) -> dict[str, Any]:
        libopus = self.opuslib.api.info.get_version_string().decode()
        return {**super().describe(), "spec": self.spec, "implementation": f"{libopus} via opuslib "
                f"{version('opuslib')}", "kbps": self.kbps, "vbr": self.vbr,
                "application": self.application, "complexity": self.complexity, "frame_ms": self.frame_ms,
                "lookahead_samples": self.lookahead}


@register("opus")
def _opus(spec: CodecSpec) -> OpusCodec:
    settings: dict[str, Any] = {}
    for option in spec.options:
        if option in ("vbr", "cbr"):
            settings["vbr"] = option == "vbr"
        elif option in APPLICATIONS:
            settings["application"] = option
        elif option in ("mono", "stereo"):
            settings["channels"] = 1 if option == "mono" else 2
        elif option[0] == "c" and option[1:].isdigit():
            settings["complexity"] = int(option[1:])
        elif option[0] == "f" and _is_number(option[1:]):
            settings["frame_ms"] = float(option[1:])
        else:
            raise unknown_option("opus", option, OPTIONS_HELP)
    return OpusCodec(spec.kbps if spec.kbps is not None else DEFAULT_KBPS, **settings)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
