"""``encodec-bench``: every codec x bitrate x item of an evaluation set, scored, timed and summarised.

With no arguments it runs EnCodec (24 kHz) and Opus at 1.5, 3, 6 and 12 kbps on the embedded default set.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import warnings
from pathlib import Path
from typing import Iterator, Optional, Sequence

from codec.audio import AudioError
from codec.base import CodecError, CodecSpec, known_codecs
from encodec_eval.data import DataError
from encodec_eval.metrics import DEFAULT_METRICS, MetricError, expand_metrics, get_metric, known_metrics
from encodec_eval.run.folder import RunFolder, RunFolderError
from encodec_eval.run.plan import codec_specs
from encodec_eval.run.runner import PluginError, RunConfig, failed_specs, import_plugins, report, run

DEFAULT_CODECS = ("encodec", "opus")
DEFAULT_BITRATES = (1.5, 3.0, 6.0, 12.0)


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _bitrates(text: str) -> list[float]:
    try:
        values = [float(part) for part in _csv(text)]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--bw expects kbps numbers separated by commas, got {text!r}") from exc
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"--bw expects positive kbps values, got {text!r}")
    return values


def _positive(text: str) -> int:
    value = _non_negative(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from exc
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text}")
    return value


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from exc
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="encodec-bench", description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--codecs", type=_csv, default=list(DEFAULT_CODECS),
                        help="codec names or specs, comma-separated (e.g. encodec,opus or encodec:48khz,opus@24)")
    parser.add_argument("--anchors", type=_csv, default=[],
                        help="codecs run once without a bitrate, e.g. reference (the hidden reference) or low-pass "
                             "anchors")
    parser.add_argument("--bw", type=_bitrates, default=list(DEFAULT_BITRATES),
                        help="bitrates in kbps crossed with every codec named without one")
    parser.add_argument("--metrics", type=lambda text: expand_metrics(_csv(text)), default=list(DEFAULT_METRICS),
                        help="metric columns to compute; `dnsmos` and `plcmos` stand for their columns on the decoded "
                             "audio and on the reference")
    parser.add_argument("--data", default=None,
                        help="folder of audio, or a CSV/TSV/JSONL manifest with path[,category]; default: embedded set")
    parser.add_argument("--limit-per-category", type=_positive, default=None,
                        help="use only the first N items of each category (quick runs)")
    parser.add_argument("--out", default=None, help="run folder (default: <runs-dir>/<UTC time>-<name>)")
    parser.add_argument("--runs-dir", default="runs", help="parent folder for new runs")
    parser.add_argument("--name", default="bench", help="suffix of a new run folder's name")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out, skipping finished rows; the options that define the run "
                             "(codecs, bitrates, anchors, metrics, data, limits, timing, plugins, device, weights) "
                             "default to what its run.json recorded")
    parser.add_argument("--retry-errors", action="store_true",
                        help="with --resume: run again the rows that ended in error (their new rows supersede them)")
    parser.add_argument("--workers", type=_positive, default=os.cpu_count() or 1,
                        help="processes on this machine (under torchrun: 1 per rank)")
    parser.add_argument("--repeats", type=_non_negative, default=3,
                        help="timed repeats per RTF after the warm-up; the median is kept (0: no timing)")
    parser.add_argument("--timing-items", type=_non_negative, default=2,
                        help="items per category whose rows carry real-time factors (the timing set)")
    parser.add_argument("--timing-seconds", type=_positive_seconds, default=3.0,
                        help="seconds of each timing-set item that are timed (its first ones)")
    parser.add_argument("--compare-to", type=_csv, default=[], metavar="SPEC",
                        help="codec spec(s) of the run, e.g. opus@6: every other spec is compared with it item by "
                             "item (bootstrap interval of the per-item differences, per metric and category), "
                             "printed and written to paired.csv")
    parser.add_argument("--report-only", action="store_true",
                        help="rebuild rows.csv, summary.csv and plots of the run in --out (finished or not), and print")
    parser.add_argument("--keep-audio", action="store_true", help="save reference and decoded audio in audio/")
    parser.add_argument("--device", default="cpu",
                        help="where codecs that can use a GPU run (cpu, cuda, cuda:N; under torchrun, cuda is each "
                             "rank's own GPU); metrics and CPU-only codecs stay on the CPU, and rows name the device")
    parser.add_argument("--weights", default=None,
                        help="EnCodec weights: auto (default), official, hf, project, random, or a path (official "
                             ".th, Hugging Face folder, or a project checkpoint); a spec suffix such as "
                             "encodec:24khz-hf@6 still wins for that spec")
    parser.add_argument("--download-weights", action="store_true",
                        help="first fetch the official EnCodec weights (24 and 48 kHz codecs and their LMs) where "
                             "missing, from $ENCODEC_DOWNLOAD_URL if set, else Meta's server, into $ENCODEC_WEIGHTS if "
                             "set, else the torch hub cache; hashes are checked. The neural codecs named in --codecs "
                             "(dac, snac, mimi, vocos) get their hub models into the Hugging Face cache. Then do what "
                             "the other options ask (with none: the default run, on the official weights)")
    parser.add_argument("--plugins", type=_csv, default=[],
                        help="Python modules to import first (in every worker) so that they register extra codecs "
                             "or metrics")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--list", action="store_true", help="list known codecs and metrics, then exit")
    return parser


#: Options whose value a resumed run takes from its run.json unless the command line gives them: (command-line
#: name, RunConfig field).
RESUMED_OPTIONS = {"codecs": "codecs", "anchors": "anchors", "bw": "bitrates", "metrics": "metrics", "data": "data",
                   "limit_per_category": "limit_per_category", "repeats": "repeats",
                   "timing_items": "timing_items_per_category", "timing_seconds": "timing_seconds",
                   "keep_audio": "keep_audio", "plugins": "plugins", "device": "device", "compare_to": "compare_to",
                   "weights": "weights"}


def given_options(argv: Optional[Sequence[str]]) -> set[str]:
    """The options the command line names (argparse ``dest`` names), as opposed to those left at their default."""
    parser = build_parser()
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    return set(vars(parser.parse_args(argv)))


def resume_options(args: argparse.Namespace, given: set[str]) -> None:
    """Fill the options the command line left out with the values the run in ``--out`` was started with, so that
    ``encodec-bench --out runs/x --resume`` continues it as it was (and not on the default data and metrics)."""
    info_path = Path(args.out) / "run.json"
    if not info_path.is_file():
        return  # nothing to resume yet: the run starts here
    recorded = RunFolder(Path(args.out)).read_info().get("config", {})
    for option, field in RESUMED_OPTIONS.items():
        if option not in given and field in recorded:
            setattr(args, option, recorded[field])


@contextlib.contextmanager
def one_line_warnings() -> Iterator[None]:
    """Warnings as one line each, ``encodec-bench: warning: ...``, without the source line Python prints."""
    before = warnings.formatwarning
    warnings.formatwarning = lambda message, *_args, **_kwargs: f"encodec-bench: warning: {message}\n"
    try:
        yield
    finally:
        warnings.formatwarning = before


def _select_weights(choice: str) -> str:
    """Pass the choice through the adapter's environment variable, which pool workers and torchrun ranks inherit;
    returns it as run.json records it (a path made absolute, so that --resume finds it from anywhere)."""
    from codec.encodec.codec import SOURCES, WEIGHTS_ENV

    if choice not in SOURCES and not Path(choice).exists():
        raise CodecError(f"--weights {choice!r} is neither a source ({', '.join(SOURCES)}) nor an existing path")
    os.environ[WEIGHTS_ENV] = choice if choice in SOURCES else str(Path(choice).absolute())
    return os.environ[WEIGHTS_ENV]


def _download_weights(specs: Sequence[str]) -> None:
    """Fetch the official files before any worker resolves ``auto`` weights, so that the run uses Meta's, and the
    hub models of the neural codecs among ``specs``."""
    from codec.encodec.checkpoints import DownloadError, download_all_official
    from codec.neural.catalogue import hub_models
    from codec.neural.hub import download as download_hub

    try:
        folders = sorted({str(path.parent) for path in download_all_official()})
        print(f"encodec-bench: official EnCodec weights ready in {', '.join(folders)}", file=sys.stderr)
        for model in hub_models(specs):
            print(f"encodec-bench: {model.repo_id} ready in {download_hub(model).folder}", file=sys.stderr)
    except DownloadError as exc:
        raise CodecError(str(exc)) from exc


def _check_weights(specs: Sequence[str]) -> None:
    """Stop before the run, with one line per codec, when a neural codec's weights are not on this machine."""
    from codec.neural.catalogue import missing_weights

    missing = [line for line in dict.fromkeys(missing_weights(text) for text in specs) if line]
    if missing:
        raise CodecError("\n".join(missing))


def main(argv: Optional[Sequence[str]] = None) -> int:
    with one_line_warnings():
        return _main(argv)


def _main(argv: Optional[Sequence[str]]) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.resume and args.out and not args.report_only:
            resume_options(args, given_options(argv))
        import_plugins(args.plugins)
        if args.weights is not None:
            args.weights = _select_weights(args.weights)
        if args.download_weights:
            _download_weights(args.codecs + args.anchors)
        if args.list:
            print("codecs:  " + ", ".join(known_codecs()))
            from codec.neural.catalogue import listing

            print("neural codecs (the `neural` extra; weights from the Hugging Face hub):\n" + "\n".join(listing()))
            print("metrics: " + ", ".join(known_metrics()))
            return 0
        codecs = known_codecs()
        for text in args.codecs + args.anchors:
            name = CodecSpec.parse(text).name
            if name not in codecs:
                raise CodecError(f"unknown codec {name!r}; known codecs: {', '.join(codecs)}")
        for column in args.metrics:
            get_metric(column)
        if not args.report_only:
            _check_weights(args.codecs + args.anchors)
        if (args.resume or args.report_only) and not args.out:
            raise RunFolderError("--resume and --report-only need --out: the run folder")
        if args.retry_errors and not args.resume:
            raise RunFolderError("--retry-errors needs --resume (and --out): it retries rows of an earlier run")
        baselines = codec_specs(args.compare_to, None) if args.compare_to else []
        if args.report_only:
            report(RunFolder(Path(args.out)), compare_to=baselines or None)
            return 0
        specs = codec_specs(args.codecs, args.bw, args.anchors)
        unknown = [spec for spec in baselines if spec not in specs]
        if unknown:
            raise CodecError(f"--compare-to {', '.join(unknown)}: not among the run's codec specs "
                             f"({', '.join(specs)})")
        workers = 1 if int(os.environ.get("WORLD_SIZE", "1")) > 1 else args.workers
        config = RunConfig(codecs=args.codecs, anchors=args.anchors, bitrates=args.bw, metrics=args.metrics,
                           data=str(Path(args.data).absolute()) if args.data else None, out=args.out,
                           runs_dir=args.runs_dir, name=args.name, resume=args.resume,
                           retry_errors=args.retry_errors, device=args.device,
                           workers=workers, repeats=args.repeats, timing_items_per_category=args.timing_items,
                           timing_seconds=args.timing_seconds, keep_audio=args.keep_audio,
                           limit_per_category=args.limit_per_category, progress=not args.no_progress,
                           plugins=args.plugins, compare_to=baselines, weights=args.weights)
        path = run(config)
    except (CodecError, MetricError, DataError, AudioError, RunFolderError, PluginError) as exc:
        print(f"encodec-bench: error: {exc}", file=sys.stderr)
        return 2
    failed = failed_specs(RunFolder(path).read_rows()) if path is not None else {}
    for spec, error in failed.items():
        print(f"encodec-bench: every row of {spec} failed ({error}); see {path}/rows.csv", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
