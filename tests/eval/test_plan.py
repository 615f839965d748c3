"""Codec specs and the job plan: crossing with bitrates, anchors, the default EnCodec model, resume keys."""

from __future__ import annotations

import pytest

from codec.base import CodecError
from encodec_eval.data import load_dataset
from encodec_eval.run.plan import codec_specs, plan


def test_codecs_are_crossed_with_bitrates_and_anchors_are_not():
    specs = codec_specs(["encodec", "opus", "opus@24", "encodec:48khz"], [1.5, 6], anchors=["reference", "lp3500"])
    assert specs == ["reference", "lp3500", "encodec:24khz@1.5", "encodec:24khz@6", "opus@1.5", "opus@6",
                     "opus@24", "encodec:48khz@1.5", "encodec:48khz@6"]
    assert codec_specs(["opus", "opus"], [6]) == ["opus@6"]
    with pytest.raises(CodecError, match="no codecs selected"):
        codec_specs([], [6])
    with pytest.raises(CodecError, match="cannot parse codec spec"):
        codec_specs(["opus@fast"], None)


def test_a_neural_codec_named_alone_means_its_catalogue_default():
    specs = codec_specs(["dac", "snac@0.98", "mimi", "vocos", "dac:16khz", "dac:16khz-random"], [6])
    assert specs == ["dac:44khz@6", "snac:24khz@0.98", "mimi:24khz@6", "vocos:encodec24khz@6", "dac:16khz@6",
                     "dac:16khz-random@6"]


def test_plan_skips_finished_rows():
    data = load_dataset(limit_per_category=1)
    jobs = plan(["opus@6", "opus@12"], data)
    assert len(jobs) == 8 and [j.codec_spec for j in jobs[:4]] == ["opus@6"] * 4
    done = {jobs[0].key, jobs[5].key}
    remaining = plan(["opus@6", "opus@12"], data, done)
    assert len(remaining) == 6 and not {j.key for j in remaining} & done
