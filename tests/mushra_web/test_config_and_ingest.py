"""Malformed configs fail with a precise message before a test opens; ingest checks audio and makes aligned,
cached anchors; a test can be created straight from an encodec-bench run folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml
from sqlalchemy import func, select

from mushra_web.cli import main as cli
from mushra_web.db import Experiment, Stimulus, init_db, make_engine, session_factory
from mushra_web.ingest import IngestError, config_from_run, create_experiment
from mushra_web.schema import ConfigError, load_config, parse_config
from tests.mushra_web.conftest import make_run


def edit(path: Path, change) -> Path:
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("change, message", [
    (lambda d: d.pop("conditions"), "conditions: Field required"),
    (lambda d: d.update(id="Bad Slug!"), "must be a slug"),
    (lambda d: d.update(conditions=["codec_a", "codec_a"]), "condition names repeat"),
    (lambda d: d.update(conditions=["codec_a", "reference"]), "'reference' is reserved"),
    (lambda d: d["items"][1]["conditions"].pop("codec_b"), "items[i2]: conditions must be exactly"),
    (lambda d: d.update(design={"training_items": ["nope"]}), "unknown items ['nope']"),
    (lambda d: d.update(design={"items_per_participant": 9}), "exceeds the 3 test items"),
    (lambda d: d.update(design={"max_conditions": 1}), "exceed design.max_conditions=1"),
    (lambda d: d.update(crowd={"platform": "prolific", "complete_url": "https://x.org/done"}), "{code}"),
    (lambda d: d.update(crowd={"platform": "prolific", "complete_url": "javascript:alert(1)"}), "http(s) URL"),
    (lambda d: d.update(anchors=["lp1000"]), "anchors.0"),
    (lambda d: d.update(sample_rate="fast"), "sample_rate"),
    (lambda d: d.update(surprise=1), "surprise: Extra inputs are not permitted"),
    (lambda d: d["items"][0].update(id="../etc"), "item id '../etc'"),
    (lambda d: d.update(hidden_reference=False, design={"require_one_at_100": True}),
     "design.require_one_at_100 asks listeners to rate the hidden reference 100, but hidden_reference is false"),
    (lambda d: d.update(hidden_reference=False, protocol="encodec_2022"),
     "design.require_one_at_100 (protocol encodec_2022 turns it on)"),
    (lambda d: d.update(title="x" * 201), "title has 201 characters; at most 200"),
    (lambda d: d.update(instructions="a\x00b"), "instructions holds control characters (U+0000)"),
])
def test_malformed_configs_name_the_field(make_config, change, message):
    path = edit(make_config(), change)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert message in str(err.value) and str(path) in str(err.value)


def test_unreadable_yaml_and_wrong_top_level(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="expected a mapping"):
        parse_config(["a", "b"])
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "missing.yaml")


def _ingest(cfg_path: Path, tmp: Path):
    engine = make_engine(f"sqlite:///{tmp / 'db.sqlite'}")
    init_db(engine)
    with session_factory(engine)() as session:
        exp = create_experiment(session, load_config(cfg_path), tmp / "data")
        session.commit()
        return exp, engine


@pytest.mark.parametrize("damage, message", [
    (lambda p: p.write_bytes(b"RIFF\x00\x00garbage"), "cannot read audio"),
    (lambda p: p.unlink(), "no such audio file"),
    (lambda p: sf.write(p, np.full(16000, np.nan, np.float32), 16000, subtype="FLOAT"), "NaN or Inf"),
    (lambda p: sf.write(p, np.zeros(16000, np.float32), 22050), "has sample rate 22050 Hz"),
    (lambda p: sf.write(p, np.zeros(15000, np.float32), 16000), "15000 samples, the reference has 16000"),
    (lambda p: sf.write(p, np.zeros((16000, 3), np.float32), 16000), "has 3 channels"),
])
def test_bad_audio_is_refused_before_the_test_exists(make_config, tmp_path, damage, message):
    cfg = make_config()
    damage(tmp_path / "audio" / "i2" / "codec_b.wav")
    with pytest.raises(IngestError) as err:
        _ingest(cfg, tmp_path)
    assert message in str(err.value) and "item i2 condition codec_b" in str(err.value)
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    with session_factory(engine)() as session:
        assert session.scalar(select(func.count()).select_from(Experiment)) == 0


def test_anchors_are_time_aligned_band_limited_and_cached(make_config, tmp_path):
    exp, engine = _ingest(make_config(seconds=1.0), tmp_path)
    assert exp.ingest_report["anchors_generated"] == 6 and exp.ingest_report["anchors_cached"] == 0
    with session_factory(engine)() as session:
        stims = {(s.item_id, s.condition): s for s in session.scalars(select(Stimulus))}
    assert len(stims) == 3 * 5
    ref, _ = sf.read(tmp_path / "data" / stims[("i1", "reference")].path, dtype="float32")
    for name, cutoff in (("lp3500", 3500), ("lp7000", 7000)):
        anchor, sr = sf.read(tmp_path / "data" / stims[("i1", name)].path, dtype="float32")
        assert sr == 16000 and anchor.shape == ref.shape
        xc = np.correlate(anchor, ref, mode="full")
        assert int(np.argmax(xc)) - (len(ref) - 1) == 0  # no time shift against the reference
        spec = np.abs(np.fft.rfft(anchor)) / (np.abs(np.fft.rfft(ref)).max())
        freqs = np.fft.rfftfreq(len(anchor), 1 / sr)
        kept_5100 = spec[np.argmin(np.abs(freqs - 5100))]
        assert (kept_5100 < 1e-2) if cutoff == 3500 else (kept_5100 > 0.2)
    # stored names are content hashes: nothing on disk says which file is which condition
    names = " ".join(p.name for p in (tmp_path / "data" / "stimuli").iterdir())
    for word in ("codec", "lp3500", "lp7000", "reference", "i1"):
        assert word not in names
    # a second test over the same references reuses the cached anchors
    again = make_config(test_id="t2", seconds=1.0)
    with session_factory(engine)() as session:
        exp2 = create_experiment(session, load_config(again), tmp_path / "data")
    assert exp2.ingest_report["anchors_cached"] == 6 and exp2.ingest_report["anchors_generated"] == 0


def test_cli_create_reports_errors_and_refuses_duplicates(make_config, tmp_path, capsys):
    cfg = make_config()
    args = ["--db", f"sqlite:///{tmp_path / 'cli.db'}", "--data-dir", str(tmp_path / "data")]
    assert cli([*args, "create", str(cfg)]) == 0
    assert "created test 't1': 3 items x 2 conditions" in capsys.readouterr().out
    assert cli([*args, "create", str(cfg)]) == 2
    assert "exists already" in capsys.readouterr().err
    broken = edit(make_config(test_id="t3"), lambda d: d.update(conditions=[]))
    assert cli([*args, "create", str(broken)]) == 2
    assert "at least one condition is needed" in capsys.readouterr().err


def test_create_from_a_bench_run_folder(tmp_path, capsys):
    run = make_run(tmp_path)
    cfg, rows_csv = config_from_run(run, "from-run")
    assert cfg.title == "Listening test" and run.name not in cfg.title  # listeners see it; a run's name may say a codec
    assert cfg.conditions == ["encodec:24khz@3", "opus@6"]  # the bench's own anchors are made again, not rated twice
    assert [i.id for i in cfg.items] == ["music__b", "speech__a"] and "si_snr_db" in rows_csv
    args = ["--db", f"sqlite:///{tmp_path / 'run.db'}", "--data-dir", str(tmp_path / "data")]
    assert cli([*args, "create", "--run", str(run), "--id", "from-run", "--items-per-participant", "1"]) == 0
    out = capsys.readouterr().out
    assert "resampled 24000 -> 48000 Hz" in out and "length 47980 fitted to the reference's 48000" in out
    with pytest.raises(IngestError, match=r"no decoded audio for conditions \['mp3@8'\]"):
        config_from_run(run, "x", conditions=["mp3@8"])
    with pytest.raises(IngestError, match="no run.json"):
        config_from_run(tmp_path, "x")


def test_conditions_with_the_same_audio_are_not_two_listening_conditions(tmp_path):
    """mp3@12 ran at 8 kbps, the stream of mp3@6: a test made from the run rated one sound as two conditions."""
    run = make_run(tmp_path, codecs=("mp3@6", "mp3@12", "opus@6"))
    for item in ("speech/a", "music/b"):
        (run / "audio" / "mp3@12" / f"{item}.wav").write_bytes((run / "audio" / "mp3@6" / f"{item}.wav").read_bytes())
    with pytest.raises(IngestError, match=r"mp3@12 and mp3@6 decoded to the same audio for every item"):
        config_from_run(run, "same")
    cfg, _ = config_from_run(run, "same", conditions=["mp3@6", "opus@6"])
    assert cfg.conditions == ["mp3@6", "opus@6"]
    # the same audio for some items only is a real difference elsewhere: both stay
    (run / "audio" / "mp3@12" / "music" / "b.wav").write_bytes((run / "audio" / "opus@6" / "music" / "b.wav")
                                                                 .read_bytes())
    assert config_from_run(run, "some")[0].conditions == ["mp3@12", "mp3@6", "opus@6"]


def test_the_encodec_protocol_asks_for_a_100_unless_the_config_says_otherwise(make_config, tmp_path):
    assert load_config(make_config()).design.require_one_at_100 is False  # off by default
    cfg = load_config(make_config(protocol="encodec_2022"))
    assert cfg.design.require_one_at_100 is True and cfg.post_screening == ["encodec_2022"]
    own = load_config(make_config(protocol="encodec_2022", design={"require_one_at_100": False, "crossfade_ms": 8}))
    assert own.design.require_one_at_100 is False and own.design.crossfade_ms == 8
    assert load_config(make_config(protocol="bs1534_3")).design.require_one_at_100 is False
    with pytest.raises(ConfigError, match="protocol"):
        load_config(make_config(protocol="encodec_2023"))
    run = make_run(tmp_path / "runs")
    db = f"sqlite:///{tmp_path / 'db.sqlite'}"
    assert cli(["--db", db, "--data-dir", str(tmp_path / "data"), "create", "--run", str(run), "--id", "paper",
                "--excerpt-seconds", "1", "--protocol", "encodec_2022"]) == 0
    engine = make_engine(db)
    with session_factory(engine)() as session:
        stored = session.scalar(select(Experiment)).config_json
    engine.dispose()
    assert '"require_one_at_100":true' in stored and '"protocol":"encodec_2022"' in stored
