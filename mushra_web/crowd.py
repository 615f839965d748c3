"""Who a joining participant is: the crowd platform's ids in the test link, the browser's own key, and what each of
them is trusted with.

Prolific opens the study link with ``PROLIFIC_PID`` (the worker), ``STUDY_ID`` (the study) and ``SESSION_ID`` (this
worker's attempt at the study; a worker who returns the study and takes it again gets a new one); MTurk with
``workerId``, ``hitId`` and ``assignmentId``. What each is trusted with:

- The worker id names who is paid, but it is no secret (workers quote it to researchers, it shows in screenshots),
  so on its own it never opens a session someone else has started: that needs the browser's key, or the session id,
  or an idle first browser (``crowd.takeover_idle_minutes``), or an admin's consent.
- The session id is only in the link the platform gave this worker, so a join that repeats the stored (worker id,
  session id) pair is that worker, in another browser or after clearing cookies: it continues at once. A worker is
  one participant per session id: someone who joins first with a worker's id but not their session id gets a
  participant of their own and locks nobody out; exports count the participants that share a worker id
  (``external_id_participants``), to be matched against the platform's list of submissions.
- The study id is recorded, not checked.
- The browser's key is a random value the page keeps in localStorage and sends with every join. A join that brings
  the key of an existing participant is that browser again: its earlier join succeeded but the answer (or the
  cookie) was lost, so it gets its session back, finished or not.
- One worker id completes a test once: after one of its participants has finished, a new session is refused.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass
from typing import Optional

from fastapi import HTTPException
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mushra_web import auth
from mushra_web.db import Experiment, Participant, Rating, TakeoverGrant, Trial, utcnow
from mushra_web.schema import TestConfig


@dataclass(frozen=True)
class CrowdIdentity:
    """The platform's ids of a joining worker (each checked at the edge, see ``text.check_params``)."""

    external: str
    study: Optional[str]
    session: Optional[str]

    @property
    def key(self) -> str:
        """What makes one participant: the worker id with this session id (or with none)."""
        return hashlib.sha256(f"{self.external}\x1f{self.session or ''}".encode()).hexdigest()


def identity(cfg: TestConfig, params: dict[str, str]) -> Optional[CrowdIdentity]:
    """The crowd ids in the link's parameters (None for a test without a crowd platform, or a link without an id)."""
    external = params.get(cfg.crowd.url_param) if cfg.crowd.url_param else None
    if not external:
        return None
    study = params.get(cfg.crowd.study_param) if cfg.crowd.study_param else None
    session = params.get(cfg.crowd.session_param) if cfg.crowd.session_param else None
    return CrowdIdentity(external, study or None, session or None)


def returning(session: Session, exp: Experiment, cfg: TestConfig, crowd: Optional[CrowdIdentity],
              client_key_hash: Optional[str]) -> Optional[Participant]:
    """The existing participant this join continues (the caller gives it a new session token), or None when it
    makes a new one; raises 409 when neither may happen."""
    if crowd is None:
        if client_key_hash is None:
            return None
        return session.scalar(select(Participant).where(Participant.experiment_id == exp.id,
                                                        Participant.client_key_hash == client_key_hash,
                                                        Participant.crowd_key.is_(None)))
    p = session.scalar(select(Participant).where(Participant.experiment_id == exp.id,
                                                 Participant.crowd_key == crowd.key))
    if p is None:
        finished = session.scalar(select(func.count()).select_from(Participant).where(
            Participant.experiment_id == exp.id, Participant.external_id == crowd.external,
            Participant.status == "completed"))
        if finished:
            raise HTTPException(409, "this participant id has already completed the test")
        return None
    same_browser = client_key_hash is not None and p.client_key_hash == client_key_hash
    if same_browser:
        return p
    if p.status == "completed":
        raise HTTPException(409, "this participant id has already completed the test")
    if crowd.session is None:  # only the worker id: someone else may know it
        take_over(session, cfg, p)
    return p


def take_over(session: Session, cfg: TestConfig, p: Participant) -> None:
    """Let a new browser continue ``p``'s session if an admin allowed it or the old browser has gone idle."""
    grant = session.get(TakeoverGrant, p.id)
    if grant is not None:
        session.delete(grant)
        return
    idle = cfg.crowd.takeover_idle_minutes
    last = max(filter(None, [p.created_at, session.scalar(
        select(func.max(Rating.updated_at)).join(Trial).where(Trial.participant_id == p.id)),
        session.scalar(select(func.max(Trial.submitted_at)).where(Trial.participant_id == p.id))]))
    if idle is None or utcnow() - last < dt.timedelta(minutes=idle):
        wait = "" if idle is None else f", wait until it has been unused for {idle:g} minutes,"
        raise HTTPException(409, f"this participant id is in use in another browser: continue there{wait} "
                                 "or ask the researcher to let this browser take over")


def new_participant(exp: Experiment, crowd: Optional[CrowdIdentity], client_key_hash: Optional[str], token: str,
                    seed: int, user_agent: str, audio_env: dict) -> Participant:
    """A participant for this join, identified by its crowd ids and its browser's key."""
    return Participant(public_id=secrets.token_hex(8), experiment_id=exp.id, token_hash=auth.token_hash(token),
                       external_id=crowd.external if crowd else None, study_id=crowd.study if crowd else None,
                       crowd_session_id=crowd.session if crowd else None, crowd_key=crowd.key if crowd else None,
                       client_key_hash=client_key_hash, seed=seed, user_agent=user_agent[:400], audio_env=audio_env)
