"""Build the training corpus from package registries alone, so the evaluation sets stay unseen.

Sources (nothing else): Debian ``klettres-data`` (speech, 20 languages), ``fillets-ng-data`` (voices, music,
effects), ``ufoai-sound`` (voices and effects, inside a .pk3 zip), ``hydrogen-drumkits`` and ``lmms-common``
(instruments); optionally music21 corpus scores rendered with FluidSynth and Debian's ``fluid-soundfont-gm``, and
synthetic espeak-ng speech (``synthetic=1`` in the manifest). The default evaluation set uses music21's K.525 MIDI and
its audioSearch recording: those are excluded here.

    python -m codec.encodec.train.corpus build --out DIR [--download] [--apt-install] [--music21-scores N]
                                               [--espeak-sentences N] [--packages klettres-data ...]
    python -m codec.encodec.train.corpus compact --source DIR --out DIR [--max-mib 10]

Network and system changes happen only with --download (``apt-get download`` into the cache, no root) and
--apt-install (``apt-get install`` of fluidsynth / espeak-ng, root). Audio is written as FLAC at its original rate;
``manifest.tsv`` records every file's origin and licence, with each package's Debian copyright file in LICENSES/.

``compact`` draws a random subset of a built corpus, per category by shares of a byte budget, as 24 kHz mono Ogg
Vorbis: a corpus small enough to travel with the code to a GPU machine (the device's transfer limit is 64 MiB for
the whole tree). Most sources are game data that ship as Ogg Vorbis already, so the re-encode adds little.
"""

from __future__ import annotations

import argparse
import csv
import io
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional
from urllib.parse import unquote

import numpy as np
import soundfile as sf
from tqdm import tqdm

from ... import audio
from .data import MANIFEST_FIELDS, MANIFEST_NAME

DEFAULT_CACHE = Path.home() / ".cache" / "encodec-eval" / "corpus" / "debs"
AUDIO_SUFFIXES = (".ogg", ".wav", ".flac", ".aiff", ".aif")
MIN_SECONDS = 0.25
EXCLUDED_FROM_TRAINING = ("k525", "audiosearch")  # music21 material the default evaluation set is built from


@dataclass(frozen=True)
class DebianSource:
    package: str
    categorize: Callable[[str], Optional[str]]  # installed path -> category, or None to skip


def _fillets(path: str) -> Optional[str]:
    if "/music/" in path:
        return "music"
    return "general" if "/sound/share/" in path else "speech"


def _ufoai(path: str) -> Optional[str]:
    return "speech" if "/soldiers/" in path or "/civilians/" in path else "general"


DEBIAN_SOURCES = {
    "klettres-data": DebianSource("klettres-data", lambda p: "speech"),
    "fillets-ng-data": DebianSource("fillets-ng-data", _fillets),
    "ufoai-sound": DebianSource("ufoai-sound", _ufoai),
    "hydrogen-drumkits": DebianSource("hydrogen-drumkits", lambda p: "music"),
    "lmms-common": DebianSource("lmms-common", lambda p: "music"),
}


class CorpusBuildError(RuntimeError):
    """A source that cannot be fetched or read, with what to do about it."""


def find_deb(package: str, cache: Path, download: bool) -> Path:
    """The cached .deb of ``package``; fetched with ``apt-get download`` only when ``download`` is set."""
    cache.mkdir(parents=True, exist_ok=True)
    found = sorted(cache.glob(f"{package}_*.deb"))
    if not found and download:
        subprocess.run(["apt-get", "download", package], cwd=cache, check=True)
        found = sorted(cache.glob(f"{package}_*.deb"))
    if not found:
        raise CorpusBuildError(f"{package}: no .deb in {cache}; rerun with --download (uses apt-get download)")
    return found[-1]


def _licence_summary(copyright_text: str) -> str:
    names = sorted(set(re.findall(r"^License:\s*(.+)$", copyright_text, flags=re.M)))
    return " / ".join(names) or "see copyright file"


def _audio_members(root: Path) -> Iterator[tuple[str, bytes]]:
    """(installed path, bytes) of every audio file under ``root``, looking inside .pk3/.zip archives too."""
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        rel = "/" + str(path.relative_to(root))
        if path.suffix.lower() in AUDIO_SUFFIXES:
            yield rel, path.read_bytes()
        elif path.suffix.lower() in (".pk3", ".zip"):
            with zipfile.ZipFile(path) as archive:
                for name in sorted(archive.namelist()):
                    if name.lower().endswith(AUDIO_SUFFIXES):
                        yield f"{rel}!/{name}", archive.read(name)


def _write_item(data: np.ndarray, sr: int, out_dir: Path, rel_name: str) -> Path:
    target = out_dir / rel_name
    target.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(target), data, sr, format="FLAC", subtype="PCM_16")
    return target


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text.strip("/"))[-150:]


def add_debian_package(source: DebianSource, deb: Path, out_dir: Path, max_files: Optional[int]) -> list[dict]:
    rows = []
    version = unquote(deb.stem.split("_")[1]) if "_" in deb.stem else "?"  # apt writes "4%3a22" for "4:22"
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["dpkg-deb", "-x", str(deb), tmp], check=True)
        root = Path(tmp)
        copyright_file = root / "usr/share/doc" / source.package / "copyright"
        licence = "unknown"
        if copyright_file.is_file():
            text = copyright_file.read_text(errors="replace")
            (out_dir / "LICENSES").mkdir(parents=True, exist_ok=True)
            shutil.copy(copyright_file, out_dir / "LICENSES" / f"deb_{source.package}.copyright")
            licence = f"{_licence_summary(text)} (LICENSES/deb_{source.package}.copyright)"
        for installed, payload in tqdm(list(_audio_members(root)), desc=source.package, unit="file"):
            if max_files is not None and len(rows) >= max_files:
                break
            category = source.categorize(installed)
            if category is None:
                continue
            try:
                data, sr = sf.read(io.BytesIO(payload), dtype="float32", always_2d=True)
            except (sf.LibsndfileError, RuntimeError, ValueError):
                continue  # formats libsndfile cannot read (a few odd AIFF variants) are skipped
            if data.shape[0] < MIN_SECONDS * sr or not np.isfinite(data).all() or np.abs(data).max() < 1e-4:
                continue
            rel = Path(category) / source.package / (_safe_name(installed) + ".flac")
            _write_item(data, sr, out_dir, str(rel))
            rows.append({"path": str(rel), "category": category, "source": "debian", "package":
                         f"{source.package} {version}", "original_path": installed, "license": licence,
                         "synthetic": 0, "sample_rate": sr, "channels": data.shape[1],
                         "seconds": round(data.shape[0] / sr, 3)})
    return rows


def add_music21_renders(out_dir: Path, count: int, cache: Path, download: bool) -> list[dict]:
    """Render ``count`` music21 corpus scores (Bach chorales first) with FluidSynth and FluidR3_GM, at 48 kHz."""
    try:
        import music21
    except ImportError as exc:
        raise CorpusBuildError("music21 is not installed: pip install -c constraints.txt music21") from exc
    if shutil.which("fluidsynth") is None:
        raise CorpusBuildError("fluidsynth is not installed: rerun with --apt-install (apt-get install fluidsynth)")
    deb = find_deb("fluid-soundfont-gm", cache, download)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["dpkg-deb", "-x", str(deb), tmp], check=True)
        sf2 = next(Path(tmp).rglob("FluidR3_GM.sf2"))
        paths = [p for p in music21.corpus.getComposer("bach") if p.suffix in (".mxl", ".xml", ".krn")]
        paths = [p for p in paths if not any(x in str(p).lower() for x in EXCLUDED_FROM_TRAINING)]
        for path in tqdm(paths[:count], desc="music21", unit="score"):
            midi = Path(tmp) / (path.stem + ".mid")
            music21.converter.parse(path).write("midi", fp=str(midi))
            wav = Path(tmp) / (path.stem + ".wav")
            subprocess.run(["fluidsynth", "-ni", "-q", "-r", "48000", "-F", str(wav), str(sf2), str(midi)],
                           check=True, capture_output=True)
            data, sr = sf.read(str(wav), dtype="float32", always_2d=True)
            rel = Path("music") / "music21" / (_safe_name(path.stem) + ".flac")
            _write_item(data, sr, out_dir, str(rel))
            rows.append({"path": str(rel), "category": "music", "source": "pypi+debian",
                         "package": f"music21 {music21.__version__} + fluid-soundfont-gm", "original_path":
                         str(path.relative_to(Path(music21.__file__).parent)), "license":
                         "BSD-3-Clause (music21 corpus) + MIT (FluidR3_GM samples)", "synthetic": 1,
                         "sample_rate": sr, "channels": data.shape[1], "seconds": round(data.shape[0] / sr, 3)})
    return rows


ESPEAK_SENTENCES = {
    "en": "The quick brown fox jumps over the lazy dog while the rain keeps falling.",
    "fr": "Le petit chat dort sur le canapé pendant que la pluie tombe doucement.",
    "de": "Der alte Mann liest jeden Morgen die Zeitung am Fenster der Küche.",
    "es": "La niña camina por el parque mientras los pájaros cantan en los árboles.",
    "it": "Il treno per Roma parte alle otto e arriva prima di mezzogiorno.",
    "nl": "De fietser wacht bij het stoplicht tot het groene licht verschijnt.",
}


def add_espeak_speech(out_dir: Path, count: int) -> list[dict]:
    """Synthetic speech from espeak-ng (labelled synthetic=1), cycling through languages and voices' speeds."""
    if shutil.which("espeak-ng") is None:
        raise CorpusBuildError("espeak-ng is not installed: rerun with --apt-install (apt-get install espeak-ng)")
    rows = []
    languages = list(ESPEAK_SENTENCES)
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(count):
            lang = languages[i % len(languages)]
            speed = 130 + 15 * (i // len(languages)) % 90
            wav = Path(tmp) / f"{i}.wav"
            subprocess.run(["espeak-ng", "-v", lang, "-s", str(speed), "-w", str(wav), ESPEAK_SENTENCES[lang]],
                           check=True, capture_output=True)
            data, sr = sf.read(str(wav), dtype="float32", always_2d=True)
            rel = Path("speech") / "espeak-ng" / f"{lang}_{speed}_{i}.flac"
            _write_item(data, sr, out_dir, str(rel))
            rows.append({"path": str(rel), "category": "speech", "source": "debian", "package": "espeak-ng",
                         "original_path": f"espeak-ng -v {lang} -s {speed}", "license": "GPL-3+ (espeak-ng)",
                         "synthetic": 1, "sample_rate": sr, "channels": 1, "seconds": round(data.shape[0] / sr, 3)})
    return rows


def write_manifest(out_dir: Path, rows: list[dict]) -> Path:
    path = out_dir / MANIFEST_NAME
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=MANIFEST_FIELDS, delimiter="\t")
        writer.writeheader()
        writer.writerows(rows)
    return path


def build(out_dir: Path, packages: list[str], cache: Path = DEFAULT_CACHE, download: bool = False,
          apt_install: bool = False, music21_scores: int = 0, espeak_sentences: int = 0,
          max_files_per_package: Optional[int] = None) -> Path:
    """Build the corpus in ``out_dir``; returns the manifest path."""
    unknown = sorted(set(packages) - set(DEBIAN_SOURCES))
    if unknown:
        raise CorpusBuildError(f"not a training source: {unknown}; allowed: {sorted(DEBIAN_SOURCES)}")
    if apt_install:
        tools = [t for t, wanted in (("fluidsynth", music21_scores), ("espeak-ng", espeak_sentences)) if wanted]
        if tools:
            subprocess.run(["apt-get", "install", "-y", *tools], check=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    for package in packages:
        rows += add_debian_package(DEBIAN_SOURCES[package], find_deb(package, cache, download), out_dir,
                                   max_files_per_package)
    if music21_scores:
        rows += add_music21_renders(out_dir, music21_scores, cache, download)
    if espeak_sentences:
        rows += add_espeak_speech(out_dir, espeak_sentences)
    return write_manifest(out_dir, rows)


COMPACT_SHARES = {"speech": 0.45, "music": 0.30, "general": 0.25}
COMPACT_VORBIS_LEVEL = 0.5  # libsndfile's compression level: about 60 kbps for 24 kHz mono
VORBIS_BLOCK = 1 << 15


def compact(source: Path, out_dir: Path, max_bytes: int, sample_rate: int = 24000, seed: int = 0,
            shares: dict[str, float] = COMPACT_SHARES) -> Path:
    """Write a random subset of the corpus at ``source`` into ``out_dir`` as ``sample_rate`` mono Ogg Vorbis, each
    category within its share of ``max_bytes``; returns the new manifest. Manifest rows keep their origin."""
    manifest = source / MANIFEST_NAME
    if not manifest.is_file():
        raise CorpusBuildError(f"{manifest}: no corpus manifest; build the corpus first (`build --out {source}`)")
    with manifest.open(newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    if not rows:
        raise CorpusBuildError(f"{source / MANIFEST_NAME}: no files to compact")
    out_dir.mkdir(parents=True, exist_ok=True)
    budgets = {category: share * max_bytes for category, share in shares.items()}
    used = {category: 0 for category in shares}
    kept = []
    order = np.random.default_rng(seed).permutation(len(rows))
    for row in tqdm([rows[i] for i in order], desc="compact corpus", unit="file"):
        category = row["category"]
        if category not in budgets or used[category] >= budgets[category]:
            continue
        wav, sr = audio.load(source / row["path"])
        mono = audio.convert(wav, sr, sample_rate, 1)[0]
        relative = Path(row["path"]).with_suffix(".ogg")
        target = out_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        with sf.SoundFile(str(target), "w", sample_rate, 1, format="OGG", subtype="VORBIS",
                          compression_level=COMPACT_VORBIS_LEVEL) as handle:
            for start in range(0, len(mono), VORBIS_BLOCK):  # libsndfile 1.2's Vorbis writer crashes on long writes
                handle.write(mono[start: start + VORBIS_BLOCK])
        size = target.stat().st_size
        if used[category] + size > budgets[category]:
            target.unlink()
            continue
        used[category] += size
        kept.append({**row, "path": relative.as_posix(), "sample_rate": sample_rate, "channels": 1,
                     "seconds": round(len(mono) / sample_rate, 3)})
    licenses = source / "LICENSES"
    if licenses.is_dir():
        shutil.copytree(licenses, out_dir / "LICENSES", dirs_exist_ok=True)
    return write_manifest(out_dir, kept)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m codec.encodec.train.corpus", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build the training corpus")
    b.add_argument("--out", type=Path, required=True)
    b.add_argument("--packages", nargs="+", default=list(DEBIAN_SOURCES), choices=list(DEBIAN_SOURCES))
    b.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where .deb files are kept")
    b.add_argument("--download", action="store_true", help="apt-get download missing .deb files")
    b.add_argument("--apt-install", action="store_true", help="apt-get install fluidsynth / espeak-ng when needed")
    b.add_argument("--music21-scores", type=int, default=0, help="music21 scores to render with FluidSynth")
    b.add_argument("--espeak-sentences", type=int, default=0, help="synthetic espeak-ng utterances to add")
    b.add_argument("--max-files-per-package", type=int, default=None)
    c = sub.add_parser("compact", help="a small 24 kHz mono Ogg Vorbis subset of a built corpus")
    c.add_argument("--source", type=Path, required=True, help="a corpus made by `build`")
    c.add_argument("--out", type=Path, required=True)
    c.add_argument("--max-mib", type=float, default=10.0, help="byte budget of the audio, in MiB")
    c.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        if args.command == "compact":
            manifest = compact(args.source, args.out, int(args.max_mib * 2**20), seed=args.seed)
        else:
            manifest = build(args.out, args.packages, args.cache, args.download, args.apt_install,
                             args.music21_scores, args.espeak_sentences, args.max_files_per_package)
    except (CorpusBuildError, subprocess.CalledProcessError) as exc:
        print(f"corpus {args.command} failed: {exc}", file=sys.stderr)
        return 1
    with manifest.open() as handle:
        count = sum(1 for _ in handle) - 1
    print(f"wrote {count} files; manifest {manifest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
