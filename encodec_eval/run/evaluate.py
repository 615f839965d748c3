"""One job, one row: convert, encode, decode, time, measure the bitrate, the delay and every metric."""

from __future__ import annotations

import os
import socket
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from codec.audio import AudioError, check_finite
from codec.base import Codec, CodecError, CodecSpec, create
from encodec_eval.data import Item, first_per_category
from encodec_eval.metrics import get_metric
from encodec_eval.metrics.delay import measure_delay
from encodec_eval.run.environment import row_versions
from encodec_eval.run.folder import RunFolder
from encodec_eval.run.plan import Job
from encodec_eval.run.sanity import row_flags
from encodec_eval.run.timing import StageClock, all_threads, time_call, torch_threads

RTF_COLUMNS = ("encode_rtf_1thread", "decode_rtf_1thread", "encode_rtf_allthreads", "decode_rtf_allthreads")


@dataclass(frozen=True)
class RunOptions:
    """What every job of a run shares.

    Real-time factors are measured on a fixed timing set, not on every item: ``timed_items`` (item ids; the run
    takes the first items of each category, see ``timing_set``) are each timed on their first ``timing_seconds``.
    Timing every row on the whole item cost more than half of a default run and told no more: a codec's speed
    hardly depends on the item, and the timing set still gives an interval over items.
    """

    metrics: tuple[str, ...]
    repeats: int = 3
    keep_audio: bool = False
    run_dir: Optional[str] = None
    concurrent_processes: int = 1
    timed_items: Optional[frozenset[str]] = None  # None: every item
    timing_seconds: float = 3.0
    device: str = "cpu"  # where codecs that can use a GPU compute (metrics always run on the CPU)
    score_seconds: Optional[float] = None  # score each item's first seconds only (None: the whole item)

    def times(self, item_id: str) -> bool:
        return self.repeats > 0 and (self.timed_items is None or item_id in self.timed_items)

    def untimed_reason(self) -> str:
        if self.repeats == 0:
            return "not timed: the run was asked for no timing (--repeats 0)"
        return (f"not timed: RTF is measured on the timing set only ({len(self.timed_items or ())} items, their "
                f"first {self.timing_seconds:g} s; see timed_items in run.json)")


def timing_set(items: Sequence[Item], per_category: int) -> frozenset[str]:
    """The ids of the first ``per_category`` items of each category: the items whose rows carry real-time
    factors."""
    return frozenset(item.item_id for item in first_per_category(items, per_category))


class CodecBuildError(RuntimeError):
    """A codec spec names a known codec that could not be built here (e.g. its weights are missing)."""


@dataclass
class _CodecCache:
    """Codecs built once per process (EnCodec loads its weights); a spec that cannot be built is remembered too.

    ``CodecError`` means the codec cannot do what the spec asks (e.g. that bitrate): the row is ``unsupported``.
    Any other failure (missing weights, a broken library) becomes ``CodecBuildError``: the row is ``error``.
    """

    built: dict[tuple[str, str], "Codec | Exception"] = field(default_factory=dict)

    def get(self, spec: str, device: str = "cpu") -> Codec:
        """The codec of ``spec``, computing on ``device`` if it can (see ``Codec.use_device``)."""
        key = (spec, device)
        if key not in self.built:
            try:
                codec = create(spec)
                codec.use_device(device)
                self.built[key] = codec
            except CodecError as exc:
                self.built[key] = exc
            except Exception as exc:  # reported in every row of this spec, with its cause
                error = CodecBuildError(f"{spec}: cannot build the codec: {type(exc).__name__}: {exc}")
                error.__cause__ = exc  # kept for the run's check: missing files stop it before any work
                self.built[key] = error
        found = self.built[key]
        if isinstance(found, Exception):
            raise found
        return found


CODECS = _CodecCache()


def describe_codec(spec: str, device: str = "cpu") -> dict[str, Any]:
    """The codec's own description, or why it cannot run: recorded in run.json."""
    try:
        return CODECS.get(spec, device).describe()
    except CodecError as exc:
        return {"unsupported": str(exc)}
    except CodecBuildError as exc:
        return {"error": str(exc)}


def device_label(device: str) -> str:
    """``cpu``, or a GPU with its name (``cuda:0 (NVIDIA H200)``): what rows and timings are labelled with."""
    if device.startswith("cuda"):
        import torch

        return f"{device} ({torch.cuda.get_device_name(device)})"
    return device


def resolve_device(device: str) -> str:
    """The device this process computes on: ``cuda`` under torchrun is the rank's own GPU (``LOCAL_RANK``).
    CodecError when the machine has no such device."""
    import torch

    try:
        parsed = torch.device(device)
    except RuntimeError as exc:
        raise CodecError(f"unknown device {device!r} ({exc})") from exc
    if parsed.type == "cpu":
        return "cpu"
    if parsed.type != "cuda":
        raise CodecError(f"device {device!r}: encodec-bench runs codecs on cpu or cuda")
    if not torch.cuda.is_available():
        raise CodecError(f"device {device!r} is not available: this machine has no CUDA GPU")
    index = parsed.index if parsed.index is not None else int(os.environ.get("LOCAL_RANK", "0"))
    if index >= torch.cuda.device_count():
        raise CodecError(f"device cuda:{index} is not available: this machine has {torch.cuda.device_count()} GPU(s)")
    return f"cuda:{index}"


def _base_row(job: Job, options: RunOptions) -> dict[str, Any]:
    spec = CodecSpec.parse(job.codec_spec)
    row: dict[str, Any] = {
        "item_id": job.item.item_id, "category": job.item.category, "item_sha256": job.item.sha256,
        "codec_spec": job.codec_spec, "codec": spec.name, "codec_variant": spec.variant or "",
        "kbps_nominal": spec.kbps if spec.kbps is not None else float("nan"), "status": "ok", "error": "",
        "host": socket.gethostname(), "rank": int(os.environ.get("RANK", "0")), "pid": os.getpid(),
        "versions": row_versions(), "nan_reasons": {}, "flags": "",
    }
    row.update({column: float("nan") for column in (*options.metrics, *RTF_COLUMNS)})
    return row


def evaluate(job: Job, options: RunOptions, timing_lock: Any = None, codec: Optional[Codec] = None) -> dict[str, Any]:
    """Run one codec spec on one item; failures are recorded in the row (status, error), never raised. The row
    carries when the job started and ended (Unix seconds) and the seconds of each stage, for the throughput report.

    ``codec``: run this codec instead of building ``job.codec_spec`` (which then only labels the row), e.g. a model
    being trained (``encodec_eval.run.score``)."""
    started = time.time()
    row = _evaluate(job, options, timing_lock, codec)
    finished = time.time()
    row.update(job_started_unix=started, job_finished_unix=finished, worker_seconds=finished - started)
    return row


def _evaluate(job: Job, options: RunOptions, timing_lock: Any, codec: Optional[Codec]) -> dict[str, Any]:
    row = _base_row(job, options)
    try:
        codec = codec if codec is not None else CODECS.get(job.codec_spec, options.device)
    except CodecError as exc:
        row.update(status="unsupported", error=str(exc))
        return row
    except CodecBuildError as exc:
        row.update(status="error", error=str(exc))
        return row
    try:
        _run_codec(job, codec, options, row, timing_lock)
    except (CodecError, AudioError) as exc:
        row.update(status="error", error=f"{type(exc).__name__}: {exc}")
    except Exception as exc:  # one broken item must not end a long run; the row says what happened
        row.update(status="error", error=f"{type(exc).__name__}: {exc} | {traceback.format_exc(limit=3)}")
    return row


def _conversion(summary: str, from_sr: int, to_sr: int, from_ch: int, to_ch: int) -> str:
    """The codec's own record of the conversion, with how it was done (codec.audio.convert)."""
    how = (["soxr HQ resampling"] if from_sr != to_sr else []) + (
        ["mean downmix"] if to_ch < from_ch else ["channel copied"] if to_ch > from_ch else [])
    return f"{summary} ({', '.join(how)})" if how else summary


def _run_codec(job: Job, codec: Codec, options: RunOptions, row: dict[str, Any], timing_lock: Any) -> None:
    clock = StageClock()
    with clock.stage("load"):
        wav, sr = job.item.load()
        if options.score_seconds is not None:
            wav = wav[..., : max(1, int(options.score_seconds * sr))]
        check_finite(wav, str(job.item.path))
        seconds = wav.shape[-1] / sr
        # The conversion to the codec's rate and channels happens here, outside the timed calls, and is recorded.
        prepared = codec.prepare(wav, sr)
    codec_in, codec_sr = prepared.wav, prepared.sample_rate
    row.update(item_seconds=seconds, item_sample_rate=sr, item_channels=wav.shape[0],
               codec_sample_rate=codec_sr, codec_channels=prepared.channels,
               conversion=_conversion(prepared.conversion, sr, codec_sr, wav.shape[0], prepared.channels))

    with clock.stage("codec"), torch_threads(1), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # warm-up pass; its output is scored
        encoded = codec.encode(codec_in, codec_sr)
        decoded, decoded_sr = codec.decode(encoded)
    row["codec_warnings"] = " | ".join(dict.fromkeys(str(w.message) for w in caught))
    decoded = np.asarray(decoded, dtype=np.float32)
    check_finite(decoded, f"{job.codec_spec} output for {job.item.item_id}")
    if decoded_sr == codec_sr:
        decoded = decoded[..., : codec_in.shape[-1]]  # codecs may pad to whole frames; the tail is not the signal
    row.update(device=device_label(codec.device), kbps_measured=encoded.measured_kbps,
               kbps_payload=encoded.payload_kbps, payload_bytes=len(encoded.payload),
               decoded_sample_rate=decoded_sr, decoded_channels=decoded.shape[0],
               decoded_seconds=decoded.shape[-1] / decoded_sr,
               decoded_peak=float(np.max(np.abs(decoded))),  # beyond ±10 no metric scores it (metrics.base.unfit_input)
               latency_samples=codec.latency_samples, latency_ms=1000.0 * codec.latency_samples / codec_sr)

    def timed() -> None:
        with clock.stage("timing"):
            row.update(_timings(codec, codec_in, codec_sr, options))

    def scored() -> None:
        _score(job, wav, sr, decoded, decoded_sr, options, row, clock)

    # One process times at a time, so pool workers do not slow each other's clocks. A worker that finds the
    # timing lock taken scores its item first instead of waiting idle, and only then waits for the lock.
    if not options.times(job.item.item_id):
        row["nan_reasons"].update(dict.fromkeys(RTF_COLUMNS, options.untimed_reason()))
        scored()
    elif timing_lock is None:
        timed()
        scored()
    elif timing_lock.acquire(False):  # non-blocking (positional: threading and multiprocessing differ)
        try:
            timed()
        finally:
            timing_lock.release()
        scored()
    else:
        scored()
        with clock.stage("timing_wait"):
            timing_lock.acquire()
        try:
            timed()
        finally:
            timing_lock.release()
    row["codec_info"] = codec.describe()
    row["flags"] = row_flags(row, options.metrics)
    if options.keep_audio and options.run_dir:
        with clock.stage("keep_audio"):
            folder = RunFolder(Path(options.run_dir))
            row["reference_audio"] = folder.keep_audio("reference", job.item.item_id, wav, sr)
            row["decoded_audio"] = folder.keep_audio(job.codec_spec, job.item.item_id, decoded, decoded_sr)
    row.update(clock.columns())


def _score(job: Job, wav: np.ndarray, sr: int, decoded: np.ndarray, decoded_sr: int, options: RunOptions,
           row: dict[str, Any], clock: StageClock) -> None:
    """The delay and every metric, each timed as its own stage."""
    with clock.stage("delay"):
        delay_samples, delay_ms = measure_delay(wav, sr, decoded, decoded_sr)
    row.update(delay_samples=delay_samples, delay_ms=delay_ms)
    reasons = {}
    for column in options.metrics:
        with clock.stage(column):
            score = get_metric(column).measure(wav, sr, decoded, decoded_sr, job.item.category,
                                               known_delay_seconds=row["latency_ms"] / 1000.0)
        row[column] = score.value
        if score.reason:
            reasons[column] = score.reason
    row["nan_reasons"].update(reasons)


def _timings(codec: Codec, codec_in: np.ndarray, codec_sr: int, options: RunOptions) -> dict[str, Any]:
    """RTFs on the item's first ``timing_seconds``: its encode and decode are warmed up once, then timed."""
    threads = all_threads()
    sync = codec.synchronize
    codec_in = codec_in[..., : max(1, round(options.timing_seconds * codec_sr))]
    seconds = codec_in.shape[-1] / codec_sr
    with warnings.catch_warnings():  # warnings were recorded once, in the scored pass
        warnings.simplefilter("ignore")
        with torch_threads(1):
            encoded = codec.encode(codec_in, codec_sr)  # the warm-up, and the payload the decode timings use
            codec.decode(encoded)
        times = {
            "encode_rtf_1thread": time_call(lambda: codec.encode(codec_in, codec_sr), options.repeats, 1, sync),
            "decode_rtf_1thread": time_call(lambda: codec.decode(encoded), options.repeats, 1, sync),
            "encode_rtf_allthreads": time_call(lambda: codec.encode(codec_in, codec_sr), options.repeats, threads,
                                               sync),
            "decode_rtf_allthreads": time_call(lambda: codec.decode(encoded), options.repeats, threads, sync),
        }
    out: dict[str, Any] = {column: timing.median_wall / seconds for column, timing in times.items()}
    # The machine's 1-minute load average when timing ended: RTFs measured on a busy machine say so.
    out.update(rtf_excerpt_seconds=seconds, threads_all=threads, timing_repeats=options.repeats,
               timing_concurrent_processes=options.concurrent_processes, timing_load_avg_1min=os.getloadavg()[0])
    return out
