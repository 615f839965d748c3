import csv
import shutil
import subprocess
import zipfile

import numpy as np
import pytest
import soundfile as sf

from codec.encodec.train import corpus
from codec.encodec.train.data import SegmentSampler, read_manifest

pytestmark = pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="dpkg-deb is needed to build test packages")


def _fake_deb(tmp_path, package):
    """A real .deb holding an ogg sample, a too-short clip, and a .pk3 archive with a voice line and an effect."""
    root = tmp_path / "pkgroot"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(f"Package: {package}\nVersion: 1:2.0-1\nArchitecture: all\n"
                                             "Maintainer: test <t@example.org>\nDescription: test\n")
    doc = root / "usr/share/doc" / package
    doc.mkdir(parents=True)
    (doc / "copyright").write_text("Files: *\nLicense: GPL-2+\n\nFiles: sounds/*\nLicense: CC0-1.0\n")
    data = root / "usr/share/games/x"
    data.mkdir(parents=True)
    sr = 22050
    tone = (0.3 * np.sin(2 * np.pi * 330 * np.arange(sr) / sr)).astype(np.float32)
    sf.write(data / "tone.ogg", tone, sr)
    sf.write(data / "click.wav", tone[:100], sr)  # shorter than MIN_SECONDS: skipped
    with zipfile.ZipFile(data / "sounds.pk3", "w") as archive:
        for name in ("sound/soldiers/yes.wav", "sound/weapons/shot.wav"):
            path = tmp_path / "member.wav"
            sf.write(path, tone, sr)
            archive.write(path, name)
    cache = tmp_path / "cache"
    cache.mkdir()
    subprocess.run(["dpkg-deb", "--build", str(root), str(cache / f"{package}_1%3a2.0-1_all.deb")], check=True,
                   capture_output=True)
    return cache


def test_build_from_a_debian_package(tmp_path):
    cache = _fake_deb(tmp_path, "ufoai-sound")
    out = tmp_path / "corpus"
    manifest = corpus.build(out, ["ufoai-sound"], cache=cache)
    rows = list(csv.DictReader(manifest.open(), delimiter="\t"))
    assert sorted(r["original_path"].rsplit("/", 1)[-1] for r in rows) == ["shot.wav", "tone.ogg", "yes.wav"]
    by_name = {r["original_path"].rsplit("/", 1)[-1]: r for r in rows}
    assert by_name["yes.wav"]["category"] == "speech" and by_name["shot.wav"]["category"] == "general"
    assert all(r["package"] == "ufoai-sound 1:2.0-1" for r in rows)
    assert all("CC0-1.0 / GPL-2+" in r["license"] for r in rows)
    assert (out / "LICENSES" / "deb_ufoai-sound.copyright").exists()
    items = read_manifest(out)
    assert all(item.path.exists() for item in items)


def test_only_the_listed_sources_and_no_silent_downloads(tmp_path):
    with pytest.raises(corpus.CorpusBuildError, match="not a training source"):
        corpus.build(tmp_path / "c", ["sonic-pi-samples"], cache=tmp_path)
    with pytest.raises(corpus.CorpusBuildError, match="rerun with --download"):
        corpus.build(tmp_path / "c", ["klettres-data"], cache=tmp_path / "empty")


def test_compact_corpus_is_a_small_24khz_mono_subset_training_can_draw_from(tiny_corpus, tmp_path):
    out = tmp_path / "compact"
    budget = 40_000
    manifest = corpus.compact(tiny_corpus, out, budget, shares={"speech": 0.4, "music": 0.3, "general": 0.3})
    items = read_manifest(out)
    assert manifest == out / "manifest.tsv" and 0 < len(items) < 6
    sizes = {}
    for item in items:
        info = sf.info(str(item.path))
        assert (info.samplerate, info.channels, info.format, info.subtype) == (24000, 1, "OGG", "VORBIS")
        sizes[item.category] = sizes.get(item.category, 0) + item.path.stat().st_size
    assert sizes["speech"] <= 0.4 * budget and sizes["music"] <= 0.3 * budget and sizes["general"] <= 0.3 * budget
    with manifest.open() as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    assert all(row["original_path"] and row["sample_rate"] == "24000" for row in rows)
    assert SegmentSampler(items, 24000, 1, 0.1, seed=0).batch(2).shape == (2, 1, 2400)


def test_compact_without_a_built_corpus_is_a_clear_error(tmp_path, capsys):
    assert corpus.main(["compact", "--source", str(tmp_path / "none"), "--out", str(tmp_path / "out")]) == 1
    assert "no corpus manifest" in capsys.readouterr().err
