"""The ``encodec`` command: a drop-in for the official CLI, on our implementation.

Same grammar, defaults, file-name rules and overwrite protection as ``python -m encodec``:
``encodec [-b BW] [-f] [-q] [-l] INPUT [OUTPUT]`` compresses audio to ``.ecdc`` (or round-trips to ``.wav``),
``encodec [-f] [-r] FILE.ecdc [OUTPUT.wav]`` decompresses. Additions users asked for: ``--weights`` (an official
``.th``, a Hugging Face folder or one of our checkpoints), ``--lm-weights``, ``--device``, several inputs at once
(three or more paths, or any number with ``-o DIR``) and progress bars (files, and LM coding of long files).
``--stream`` codes files piece by piece (``file_stream``), so memory stays flat however long the file.
Outputs appear whole or not at all: they are written beside the target and renamed over it, and Ctrl-C, SIGTERM
(``timeout``) or SIGHUP stop the command with one line, exit status 128 + the signal's number, and no temporary file.
With several inputs, a file that fails (unreadable, not audio, not an ``.ecdc``, a full disk) is reported in one line
naming it, and the run goes on with the next, as ``encodec-bench`` does; the command then ends with a count of the
failures and exit status 1. Mistakes in the command line itself (an output that exists without ``-f``, a missing
output folder, a wrong extension) stop it before any file is coded.
"""

from __future__ import annotations

import argparse
import io
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Optional

import torch
from tqdm import tqdm

from codec import audio
from codec.encodec.bitstream import EcdcMetadata, packed_file_bytes, read_metadata
from codec.encodec.checkpoints import (
    DownloadError,
    WeightsNotFoundError,
    download_all_official,
    find_project_checkpoint,
    load_model,
)
from codec.encodec.compress import ONE_SHOT_SECONDS, compress, decode_one_pass, default_lm, read_source
from codec.encodec.file_stream import AudioBlocks, WavWriter, compress_file, decompress_to_wav
from codec.encodec.lm import EntropyLM, load_lm
from codec.encodec.model import EncodecModel
from codec.files import replacing, why_unreadable
from codec.signals import Interrupted, report_stop, restore_handlers, stop_on_signals

PROJECT_MODEL = "encodec_eval_24khz"  # the 24 kHz default when the official weights are absent
SUFFIX = ".ecdc"
LONG_SECONDS = 30.0  # files longer than this show a progress bar while LM coding


class CommandError(Exception):
    """A problem the user must fix; printed without a traceback."""


def _about(path: Path, exc: BaseException) -> str:
    """``exc``'s message about ``path``, naming the path once (our messages already start with it)."""
    message = str(exc)
    return message if message.startswith(str(path)) else f"{path}: {message}"


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        "encodec",
        usage="encodec [options] INPUT [OUTPUT]\n       encodec [options] INPUT INPUT INPUT...\n"
              "       encodec [options] -o DIR INPUT...\n       encodec --download-weights",
        description="High fidelity neural audio codec. If input is a .ecdc, decompresses it. If input is audio, "
                    "compresses it. If output is also wav, does a compression/decompression cycle. With three or "
                    "more paths, or with --output-dir, every path is an input.")
    parser.add_argument("paths", type=Path, nargs="*", metavar="PATH",
                        help="Input file (any format soundfile reads, or .ecdc), then optionally the output file. "
                             f"Audio whose samples go beyond ±{audio.MAX_PEAK:g} (full scale is ±1), NaN or Inf "
                             "is refused, not clipped.")
    parser.add_argument("-b", "--bandwidth", type=float, default=6, choices=[1.5, 3.0, 6.0, 12.0, 24.0],
                        help="Target bandwidth (1.5, 3, 6, 12 or 24). 1.5 is not supported with --hq.")
    parser.add_argument("-q", "--hq", action="store_true",
                        help="Use HQ stereo model operating on 48 kHz sampled audio.")
    parser.add_argument("-l", "--lm", action="store_true",
                        help="Use a language model to reduce the file size (slower).")
    parser.add_argument("-f", "--force", action="store_true", help="Overwrite output file if it exists.")
    parser.add_argument("-s", "--decompress_suffix", type=str, default="_decompressed",
                        help="Suffix for the decompressed output file (if no output path specified)")
    parser.add_argument("-r", "--rescale", action="store_true",
                        help="Automatically rescale the output to avoid clipping.")
    parser.add_argument("-w", "--weights", type=str, default=None,
                        help="Codec weights: encodec_24khz, encodec_48khz, encodec_eval_24khz, facebook/encodec_*, an "
                             "official .th file, a Hugging Face folder or an encodec-eval checkpoint. Default: the "
                             f"official model, else (24 kHz) the project's own {PROJECT_MODEL}.")
    parser.add_argument("--lm-weights", type=Path, default=None,
                        help="LM checkpoint for --lm and LM-coded files. Default: the LM trained for the model (the "
                             "official one from the torch hub cache, or the one shipped with ours).")
    parser.add_argument("--device", type=str, default="cpu", help="Torch device to run on (cpu, cuda, mps).")
    parser.add_argument("--download-weights", action="store_true",
                        help="First fetch the official 24 and 48 kHz models and their LMs where missing (from "
                             "$ENCODEC_DOWNLOAD_URL if set, else Meta's server) into $ENCODEC_WEIGHTS if set, else "
                             "the torch hub cache the official package uses; hashes are checked. With no PATH, "
                             "only download.")
    parser.add_argument("--stream", choices=("auto", "always", "never"), default="auto",
                        help="Code files piece by piece so memory stays flat however long they are. auto: always "
                             "for the 48 kHz model (same bytes), for the 24 kHz model beyond "
                             f"{ONE_SHOT_SECONDS:g} s (its streaming encoder may round a rare code differently "
                             "from the official one-pass output).")
    parser.add_argument("-o", "--output-dir", type=Path, default=None,
                        help="Write outputs (with their default names) into this folder; every path is an input.")
    return parser


@dataclass
class Job:
    source: Path
    target: Path

    @property
    def decompressing(self) -> bool:
        return self.source.suffix.lower() == SUFFIX


def load_default_model(name: str, command: str) -> EncodecModel:
    """The official model ``name``; without its weights, for the 24 kHz model, the project's own
    ``encodec_eval_24khz``, said on stderr (``command`` names who says it). The commands' default when the user
    named no model: offline, they still work, and never pass our model off as Meta's."""
    try:
        return load_model(name)
    except WeightsNotFoundError:
        if name != "encodec_24khz":
            raise
    model = load_model(PROJECT_MODEL)
    print(f"{command}: official weights not found; using the project's {PROJECT_MODEL} "
          f"({find_project_checkpoint(PROJECT_MODEL)}, NOT Meta's EnCodec: see codec/encodec/MODEL_CARD.md); "
          f"`encodec --download-weights` fetches Meta's official weights", file=sys.stderr)
    return model


@dataclass
class Resources:
    """Models and LMs, loaded once for all files."""

    args: argparse.Namespace
    models: dict[str, EncodecModel] = field(default_factory=dict)
    lms: dict[str, EntropyLM] = field(default_factory=dict)

    def model(self, name: Optional[str] = None) -> EncodecModel:
        key = self.args.weights or name or ("encodec_48khz" if self.args.hq else "encodec_24khz")
        if key not in self.models:
            model = load_model(key) if self.args.weights or name else load_default_model(key, "encodec")
            self.models[key] = model.to(self.args.device)
        return self.models[key]

    def lm(self, model: EncodecModel) -> EntropyLM:
        name = model.config.name
        if name not in self.lms:
            if self.args.lm_weights is not None:
                self.lms[name] = load_lm(self.args.lm_weights, model.config, self.args.device)
            else:
                self.lms[name] = default_lm(model.config, self.args.device)
        return self.lms[name]


def check_device(name: str) -> None:
    """Refuse a device this machine lacks before loading anything on it."""
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise CommandError(f"unknown device {name!r} ({exc})") from exc
    available = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    if not available.get(device.type, False):
        raise CommandError(f"device {name!r} is not available on this machine")


def plan_jobs(args: argparse.Namespace) -> list[Job]:
    """Inputs and outputs with the official naming rules, checked before any work starts."""
    paths: list[Path] = args.paths
    if args.output_dir is None and len(paths) <= 2:
        pairs = [(paths[0], paths[1] if len(paths) == 2 else None)]
    else:
        pairs = [(p, None) for p in paths]
    jobs = []
    for source, target in pairs:
        decompressing = source.suffix.lower() == SUFFIX
        if target is None:
            target = (source.with_name(source.stem + args.decompress_suffix).with_suffix(".wav") if decompressing
                      else source.with_suffix(SUFFIX))
            if args.output_dir is not None:
                target = args.output_dir / target.name
        elif decompressing and target.suffix.lower() != ".wav":
            raise CommandError("Output extension must be .wav")
        elif not decompressing and target.suffix.lower() not in (SUFFIX, ".wav"):
            raise CommandError(f"Output extension must be .wav or {SUFFIX}")
        try:
            folder_exists, taken = target.parent.exists(), target.exists()
        except OSError as exc:  # a folder on the way that this user may not search
            raise CommandError(f"Output file {target}: cannot check it ({exc.strerror or exc})") from exc
        if not folder_exists:
            raise CommandError(f"Output folder for {target} does not exist.")
        if taken and not args.force:
            raise CommandError(f"Output file {target} exist. Use -f / --force to overwrite.")
        jobs.append(Job(source, target))
    return jobs


def save_wav(wav: torch.Tensor, path: Path, sample_rate: int, rescale: bool) -> None:
    """16-bit PCM like the official CLI: clamped to +-0.99, or scaled down to fit with --rescale."""
    writer = WavWriter(path, sample_rate, wav.shape[0], rescale)
    try:
        writer.write(wav)
    except BaseException:  # an error or a signal: the temporary float file of --rescale goes too
        writer.discard()
        raise
    writer.close()


def streams(model: EncodecModel, seconds: float, mode: str) -> bool:
    """Whether to code a file piece by piece (``--stream``). ``auto`` streams the segmented 48 kHz model always
    (same bytes either way) and the 24 kHz model only beyond ``ONE_SHOT_SECONDS``: its streaming encoder rounds
    floats differently from the one-shot pass, so a rare near-tie code can differ from the official bytes."""
    if mode != "auto":
        return mode == "always"
    return model.config.segment_length is not None or seconds > ONE_SHOT_SECONDS


def _compress(source: Path, out: BinaryIO, model: EncodecModel, lm: Optional[EntropyLM], args: argparse.Namespace,
              long_file: bool, stream: bool) -> None:
    if stream:
        compress_file(model, source, out, args.bandwidth, args.lm, lm, long_file)
        return
    wav, sr = audio.load(source)
    wav = torch.from_numpy(audio.convert(wav, sr, model.sample_rate, model.channels)).to(args.device)
    out.write(compress(model, wav, sample_rate=model.sample_rate, use_lm=args.lm, bandwidth=args.bandwidth, lm=lm,
                       show_progress=long_file))


def _unless_larger(job: Job, out: BinaryIO, model: EncodecModel, length: int, args: argparse.Namespace,
                   long_file: bool, stream: bool) -> None:
    """``--lm`` never makes a file larger: when the LM-coded file is, write the bit-packed one instead, and say so."""
    plain = packed_file_bytes(EcdcMetadata(model.config.name, length, model.config.num_codebooks(args.bandwidth),
                                           False))
    coded = out.tell()
    if coded <= plain:
        return
    out.seek(0)
    out.truncate()
    _compress(job.source, out, model, None, argparse.Namespace(**{**vars(args), "lm": False}), long_file, stream)
    print(f"encodec: {job.target}: written without the LM, which made it larger ({coded} bytes against {plain})",
          file=sys.stderr)


def _decompress(data: bytes, target: Path, model: EncodecModel, lm: Optional[EntropyLM], args: argparse.Namespace,
                long_file: bool, stream: bool) -> None:
    if stream:
        decompress_to_wav(data, target, model, lm, args.rescale, long_file)
        return
    wav = decode_one_pass(data, model, lm, long_file)  # as asked (--stream never), even beyond ONE_SHOT_SECONDS
    with replacing(target) as part:
        save_wav(wav, part, model.sample_rate, args.rescale)


def _format(sample_rate: int, channels: int) -> str:
    return f"{sample_rate} Hz {'mono' if channels == 1 else 'stereo' if channels == 2 else f'{channels}-channel'}"


def note_conversion(job: Job, blocks: AudioBlocks, model: EncodecModel, hq: bool) -> None:
    """Say on stderr when the input is converted to the model's rate or channels: the output keeps the model's
    format, and a user who gave 48 kHz stereo should not find 24 kHz mono without being told."""
    given, coded = (blocks.source_rate, blocks.source_channels), (model.sample_rate, model.channels)
    if given == coded:
        return
    outcome = f"{job.target} is" if job.target.suffix.lower() == ".wav" else f"{job.target} decodes to"
    richer = blocks.source_rate > model.sample_rate or blocks.source_channels > model.channels
    hint = "; -q/--hq codes 48 kHz stereo" if richer and not hq else ""
    print(f"encodec: {job.source} is {_format(*given)}; {model.config.name} codes {_format(*coded)}, so "
          f"{outcome} {_format(*coded)}{hint}", file=sys.stderr)


def run_job(job: Job, resources: Resources) -> None:
    """One file; a failure leaves no partial output and keeps an existing one (``codec.files.replacing``)."""
    reason = why_unreadable(job.source)
    if reason is not None:
        raise CommandError(f"Input file {job.source} {reason}.")
    args = resources.args
    if job.decompressing:
        data = read_source(job.source)  # header first: a large file that is not an .ecdc is refused at once
        metadata, _ = read_metadata(data)
        model = resources.model(metadata.model)
        seconds = metadata.audio_length / model.sample_rate
        lm = resources.lm(model) if metadata.use_lm else None
        _decompress(data, job.target, model, lm, args, seconds > LONG_SECONDS, streams(model, seconds, args.stream))
        return
    model = resources.model()
    if args.bandwidth not in model.config.target_bandwidths:
        supported = ", ".join(f"{b:g}" for b in model.config.target_bandwidths)
        raise CommandError(f"Bandwidth {args.bandwidth:g} is not supported by the model {model.config.name}; it "
                           f"supports {supported} (-b)")
    blocks = AudioBlocks(job.source, model.sample_rate, model.channels)
    length = blocks.length
    seconds = length / model.sample_rate
    stream, long_file = streams(model, seconds, args.stream), seconds > LONG_SECONDS
    lm = resources.lm(model) if args.lm else None
    if job.target.suffix.lower() == SUFFIX:
        with replacing(job.target) as part, open(part, "wb") as out:
            _compress(job.source, out, model, lm, args, long_file, stream)
            if args.lm:
                _unless_larger(job, out, model, length, args, long_file, stream)
    else:  # a round trip: the .ecdc bytes are small, they stay in memory
        out = io.BytesIO()
        _compress(job.source, out, model, lm, args, long_file, stream)
        _decompress(out.getvalue(), job.target, model, lm, args, long_file, stream)
    note_conversion(job, blocks, model, args.hq)  # once written: a file that then fails is named by its error alone


def _report(error: CommandError, jobs: int) -> int:
    """Print one file's failure in one line (above the progress bar of several files); returns 1, to count it."""
    if jobs > 1:
        tqdm.write(str(error), file=sys.stderr)
    else:
        print(error, file=sys.stderr)
    return 1


def main(argv: Optional[list[str]] = None) -> int:
    parser = get_parser()
    args = parser.parse_args(argv)
    if not args.paths and not args.download_weights:
        parser.error("the following arguments are required: PATH")
    previous_handlers = stop_on_signals()
    try:
        check_device(args.device)
        jobs = plan_jobs(args) if args.paths else []
        if args.download_weights:  # after the checks above, so that a typo does not cost a download
            try:
                folders = sorted({str(path.parent) for path in download_all_official()})
            except DownloadError as exc:
                raise CommandError(str(exc)) from exc
            print(f"encodec: official weights ready in {', '.join(folders)}", file=sys.stderr)
        resources = Resources(args)
        failed = 0
        for job in tqdm(jobs, unit="file", disable=True if len(jobs) < 2 else None):  # None: only on a terminal
            try:
                run_job(job, resources)
            except CommandError as exc:
                failed += _report(exc, len(jobs))
            except (ValueError, OSError) as exc:  # our error types (EcdcError, AudioError, ...) are ValueErrors
                failed += _report(CommandError(_about(job.source, exc)), len(jobs))
            except MemoryError as exc:
                failed += _report(CommandError(f"{job.source}: not enough memory to code it ({exc})"), len(jobs))
        if failed:
            if len(jobs) > 1:
                print(f"encodec: {failed} of {len(jobs)} files failed (each named above); the others were written",
                      file=sys.stderr)
            return 1
    except CommandError as exc:
        print(exc, file=sys.stderr)
        return 1
    except Interrupted as exc:
        return report_stop("encodec", exc, "unfinished outputs were removed")
    finally:
        restore_handlers(previous_handlers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
