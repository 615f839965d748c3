"""How a page's save reaches the stored ratings: in order, once, and never over another page's newer work.

Every stored save raises the trial's ``version``. A page (a browser tab; ``tab`` is a random id it makes when it
opens) numbers its own saves (``seq``) and says which version its ratings were built on (``base``):

- from the page that made the last stored save: a higher ``seq`` is stored; the same ``seq`` with the same content
  is a retry whose answer was lost (``saved``), with other content a conflict; a lower one arrived late and is
  ``stale`` (its page has stored something newer since);
- from any other page: stored when ``base`` is the stored version, otherwise a conflict, since another page saved in
  between and storing these ratings would overwrite its work (an unrated slider would even erase a rating).

On a conflict nothing is stored and the page reloads what is. So "Saved" on a page always means stored. Clients that
send no ``tab`` (scripts, the load benchmark) count as one page.
"""

from __future__ import annotations

import enum
import hashlib
from typing import Optional

from fastapi import HTTPException
from pydantic import Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from mushra_web.db import Rating, Stimulus, Trial, utcnow
from mushra_web.plan import count_rater
from mushra_web.web import StrictPayload

TAB_PATTERN = r"^[A-Za-z0-9_-]{8,32}$"


class RatingIn(StrictPayload):
    button: int = Field(ge=0, le=63)
    score: Optional[float] = Field(default=None, ge=0, le=100, allow_inf_nan=False)
    plays: int = Field(default=0, ge=0, le=100_000)
    listen_ms: int = Field(default=0, ge=0, le=100_000_000)
    n_moves: int = Field(default=0, ge=0, le=1_000_000)


class LoopIn(StrictPayload):
    enabled: bool = True
    start: int = Field(ge=0, le=2**31)
    end: int = Field(ge=0, le=2**31)


class SaveBody(StrictPayload):
    seq: int = Field(ge=1, le=2**31)
    tab: Optional[str] = Field(default=None, pattern=TAB_PATTERN)
    base: Optional[int] = Field(default=None, ge=0, le=2**31)
    ratings: list[RatingIn] = Field(default_factory=list, max_length=64)
    reference_plays: int = Field(default=0, ge=0, le=100_000)
    n_switches: int = Field(default=0, ge=0, le=10_000_000)
    loop: Optional[LoopIn] = None

    def digest(self) -> str:
        """What this save would store, so that a retry can be told from a different save with the same number."""
        return hashlib.sha256(self.model_dump_json(exclude={"seq", "tab", "base"}).encode()).hexdigest()


class Outcome(enum.Enum):
    STORED = "stored"
    RETRY = "retry"  # this very save was stored before
    STALE = "stale"  # an older save of the page that stored a newer one
    CONFLICT = "conflict"  # another page saved since this page's ratings were loaded


def apply_save(session: Session, experiment_id: int, trial: Trial, body: SaveBody) -> Outcome:
    """Store a save (in the caller's write transaction) unless the rules above say otherwise."""
    session.refresh(trial, with_for_update=True)  # concurrent saves of one trial decide one after the other
    ratings = {r.button_index: r for r in session.execute(
        select(Rating).where(Rating.trial_id == trial.id).with_for_update()).scalars()}
    buttons = [r.button for r in body.ratings]
    if len(set(buttons)) != len(buttons):
        raise HTTPException(422, "a button appears twice in one save")
    unknown = [b for b in buttons if b not in ratings]
    if unknown:
        raise HTTPException(422, f"buttons {unknown} do not belong to this trial")
    n_frames = session.get(Stimulus, trial.reference_stimulus_id).n_frames
    if body.loop is not None and not (body.loop.start < body.loop.end <= n_frames):
        raise HTTPException(422, f"loop region must satisfy 0 <= start < end <= {n_frames}")
    tab, digest = body.tab or "", body.digest()
    if trial.version and trial.saved_by == tab:
        if body.seq < trial.save_seq:
            return Outcome.STALE
        if body.seq == trial.save_seq:
            return Outcome.RETRY if digest == trial.save_digest else Outcome.CONFLICT
    elif trial.version and body.base != trial.version:
        return Outcome.CONFLICT
    rated_before = any(r.score is not None for r in ratings.values())
    now, version = utcnow(), trial.version + 1
    for item in body.ratings:
        row = ratings[item.button]
        row.score, row.n_moves = item.score, item.n_moves
        row.plays, row.listen_ms = max(row.plays, item.plays), max(row.listen_ms, item.listen_ms)
        row.save_seq, row.updated_at = version, now
    rated_after = any(r.score is not None for r in ratings.values())
    if rated_after != rated_before:
        count_rater(session, experiment_id, trial, 1 if rated_after else -1)
    trial.reference_plays = max(trial.reference_plays, body.reference_plays)
    trial.n_switches = max(trial.n_switches, body.n_switches)
    if body.loop is not None:
        trial.loop = body.loop.model_dump()
    trial.version, trial.saved_by, trial.save_seq, trial.save_digest = version, tab, body.seq, digest
    return Outcome.STORED


def conflict(trial: Trial) -> HTTPException:
    """The answer to a conflicting save or submit: 409, with the stored version for the page to reload."""
    return HTTPException(409, {"message": "these ratings were changed in another tab or window since this page "
                                          "loaded them; nothing was saved from here",
                               "conflict": True, "version": trial.version})
