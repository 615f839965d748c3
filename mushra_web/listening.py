"""What the server itself saw of a participant's listening: which sounds of a trial it sent and when, and the
shortest time a trial may take.

The browser's ``plays`` and ``listen_ms`` are the page's own account and a script can send any numbers. The
server's record cannot be talked into: a trial's clock starts when the first of its sounds is sent, and a trial
can be submitted only ``design.min_trial_lengths`` stimulus lengths later (one by default: with sounds that play in
step, one pass through the excerpt is the least in which every sound can have been heard once).
"""

from __future__ import annotations

import datetime as dt
from typing import Optional

from sqlalchemy import update
from sqlalchemy.orm import Session

from mushra_web.db import Rating, Trial, utcnow
from mushra_web.schema import TestConfig


def min_trial_seconds(cfg: TestConfig, n_frames: int, sample_rate: int) -> float:
    """The shortest time from a trial's first sound sent to its submit."""
    return cfg.design.min_trial_lengths * n_frames / sample_rate


def note_served(session: Session, trial: Trial, button: Optional[int]) -> None:
    """Count one sending of the reference (``button`` None) or of a button's sound, and start the trial's clock."""
    now = utcnow()
    if trial.audio_first_at is None:
        session.execute(update(Trial).where(Trial.id == trial.id, Trial.audio_first_at.is_(None))
                        .values(audio_first_at=now))
    if button is None:
        session.execute(update(Trial).where(Trial.id == trial.id)
                        .values(reference_served=Trial.reference_served + 1))
    else:
        session.execute(update(Rating).where(Rating.trial_id == trial.id, Rating.button_index == button)
                        .values(served=Rating.served + 1))


def seconds_listened(trial: Trial, now: Optional[dt.datetime] = None) -> Optional[float]:
    """Seconds since the trial's first sound was sent (None before any was)."""
    if trial.audio_first_at is None:
        return None
    return ((now or utcnow()) - trial.audio_first_at).total_seconds()


def submit_refusal(trial: Trial, ratings: list[Rating], cfg: TestConfig, n_frames: int,
                   sample_rate: int) -> Optional[dict]:
    """Why this trial cannot be submitted yet by what the server saw, or None: a sound never sent (when every sound
    must be played) or too little time since the first was."""
    if cfg.design.require_play_all:
        unsent = sorted(r.button_index for r in ratings if r.served < 1)
        if unsent or trial.reference_served < 1:
            return {"message": "every sound must be loaded and played before going on (the server never sent "
                               + ("the reference" if not unsent else f"sound {', '.join(str(b + 1) for b in unsent)}")
                               + ")", "unplayed": unsent, "reference_unsent": trial.reference_served < 1}
    need = min_trial_seconds(cfg, n_frames, sample_rate)
    listened = seconds_listened(trial)
    if need > 0 and listened is None:
        return {"message": "load and listen to the sounds first: none of this trial's sounds has been sent",
                "wait_seconds": need, "min_seconds": need}
    if need > 0 and listened < need:
        return {"message": f"listen a little longer: this trial can go on in {need - listened:.1f} s",
                "wait_seconds": need - listened, "min_seconds": need}
    return None
