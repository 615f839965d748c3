"""The participant's API under /e/<test>: join, trials with autosave and submit, finish, and per-session audio.

A participant is the holder of an HttpOnly cookie scoped to the test's path; the browser only ever sees button
numbers and signed audio links, never which condition sits behind a button.
"""

from __future__ import annotations

import math
import random
import secrets
from dataclasses import dataclass
from typing import Optional

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from pydantic import Field, field_validator
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mushra_web import auth, crowd, dither, listening, saving, throttle
from mushra_web.db import Experiment, Participant, Rating, Stimulus, Trial, begin_write, utcnow
from mushra_web.plan import build_plan
from mushra_web.saving import SaveBody
from mushra_web.schema import TestConfig
from mushra_web.text import check_params
from mushra_web.web import Position, StrictPayload, Wiring, config, db, experiment, releases_session, wiring

SCALE = [[80, "Excellent"], [60, "Good"], [40, "Fair"], [20, "Poor"], [0, "Bad"]]

router = APIRouter(prefix="/e/{slug}")


# ---- payloads ----

class AudioEnv(StrictPayload):
    """What the browser's AudioContext reports: the playback rate in Hz and latencies in seconds."""

    sampleRate: Optional[float] = Field(default=None, ge=3000, le=768000, allow_inf_nan=False)
    baseLatency: Optional[float] = Field(default=None, ge=0, le=10, allow_inf_nan=False)
    outputLatency: Optional[float] = Field(default=None, ge=0, le=10, allow_inf_nan=False)
    maxChannelCount: Optional[int] = Field(default=None, ge=0, le=1024)


class JoinBody(StrictPayload):
    params: dict[str, str] = Field(default_factory=dict, max_length=20)
    # the random key the page keeps for this browser (see ``crowd``)
    client_key: Optional[str] = Field(default=None, pattern=r"^[A-Za-z0-9_-]{22,64}$")
    audio_env: AudioEnv = Field(default_factory=AudioEnv)

    @field_validator("params")
    @classmethod
    def _storable(cls, v: dict[str, str]) -> dict[str, str]:
        return check_params(v)


# ---- shared by the handlers ----

def cookie_name(slug: str) -> str:
    return f"mushra_p_{slug}"


async def session_token(slug: str, request: Request) -> Optional[str]:
    """Dependency: the participant cookie of this test, if the browser sent one."""
    return request.cookies.get(cookie_name(slug))


def find_participant(session: Session, exp: Experiment, token: Optional[str]) -> Optional[Participant]:
    if not token:
        return None
    return session.scalar(select(Participant).where(Participant.token_hash == auth.token_hash(token),
                                                    Participant.experiment_id == exp.id))


@dataclass(frozen=True)
class Visit:
    """What a participant's request works on: the test, its config and the participant."""

    exp: Experiment
    cfg: TestConfig
    p: Participant


def visit(session: Session, slug: str, token: Optional[str], *, write: bool = False,
          saving: bool = False) -> Visit:
    """The common start of a participant handler, run in its own thread.

    ``write`` opens the transaction as a writer before the first read; ``saving`` refuses a closed test.
    """
    if write:
        begin_write(session)
    exp = experiment(session, slug)
    if saving and exp.status != "open":
        raise HTTPException(403, "this test is closed: nothing more can be saved")
    p = find_participant(session, exp, token)
    if p is None:
        raise HTTPException(401, "no participant session for this test; open the test link again")
    return Visit(exp, config(exp.config_json), p)


def current_position(session: Session, p: Participant) -> tuple[int, int]:
    """(first trial not yet submitted, number of trials)."""
    n = session.scalar(select(func.count()).select_from(Trial).where(Trial.participant_id == p.id)) or 0
    done = session.scalar(select(func.count()).select_from(Trial).where(
        Trial.participant_id == p.id, Trial.status == "submitted")) or 0
    return done, n


def completion(cfg: TestConfig, p: Participant) -> dict:
    url = cfg.crowd.complete_url.replace("{code}", p.completion_code) if cfg.crowd.complete_url else None
    return {"code": p.completion_code, "redirect_url": url}


def state(session: Session, v: Visit, w: Wiring) -> dict:
    position, n = current_position(session, v.p)
    out = {"title": v.exp.title, "instructions": v.cfg.instructions, "n_trials": n, "position": position,
           "finished": v.p.status == "completed", "sample_rate": v.exp.sample_rate,
           "channels": v.exp.channels, "crossfade_ms": v.cfg.design.crossfade_ms, "min_loop_s": v.cfg.design.min_loop_s,
           "scale": SCALE, "crowd_platform": v.cfg.crowd.platform, "testhook": w.settings.test_mode}
    if v.p.status == "completed":
        out["completion"] = completion(v.cfg, v.p)
    return out


def audio_url(w: Wiring, v: Visit, position: int, button: str) -> str:
    mac = auth.sign(w.url_key, v.p.public_id, position, button)
    return f"/e/{v.exp.slug}/a/{position}/{button}/{mac}"


def open_trial(session: Session, p: Participant, position: int) -> Trial:
    """The participant's current trial, which must be the one at ``position``."""
    current, n = current_position(session, p)
    if position < 0 or position >= n:
        raise HTTPException(404, f"no trial {position}; this plan has {n}")
    if position != current:
        raise HTTPException(409, f"trial {position} is not the current one ({current})")
    return session.scalar(select(Trial).where(Trial.participant_id == p.id, Trial.position == position))


# ---- routes ----

@router.get("/api/info")
@releases_session
def info(slug: str, session: Session = Depends(db)) -> dict:
    """What a newcomer reads before joining, and the rate to open the audio at (so that it is the one reported)."""
    exp = experiment(session, slug)
    return {"title": exp.title, "instructions": config(exp.config_json).instructions, "sample_rate": exp.sample_rate,
            "status": exp.status}


@router.post("/api/join")
@releases_session
def join(slug: str, body: JoinBody, request: Request, response: Response,
         token: Optional[str] = Depends(session_token), w: Wiring = Depends(wiring),
         session: Session = Depends(db)) -> dict:
    """Start or continue a participant (see ``crowd`` for who is who) and set the session cookie."""
    key_hash = auth.token_hash(body.client_key) if body.client_key else None
    for attempt in range(2):  # a second go only after losing a race to create the same participant
        begin_write(session)
        exp = experiment(session, slug)
        cfg = config(exp.config_json)
        crowd_id = crowd.identity(cfg, body.params)
        p = find_participant(session, exp, token)
        if p is not None and crowd_id is not None and p.crowd_key != crowd_id.key:
            p = None  # a different worker (or session) on the same browser: another participant
        if p is None:
            p = crowd.returning(session, exp, cfg, crowd_id, key_hash)
            if p is not None:  # the same person in a new browser, or this browser after a lost answer
                token = auth.new_token()
                p.token_hash = auth.token_hash(token)
        if p is not None:
            break
        token = auth.new_token()
        p = _new_participant(session, request, exp, cfg, crowd_id, key_hash, token, body)
        try:
            session.flush()
        except IntegrityError:
            session.rollback()
            if attempt:
                raise HTTPException(409, "this participant id has just joined from another browser") from None
            continue
        build_plan(session, exp, cfg, p)
        break
    if key_hash is not None:  # the browser that holds the session now: its retries are recognised (``crowd``)
        p.client_key_hash = key_hash
    env = body.audio_env.model_dump(exclude_none=True)
    if env:
        p.audio_env = env
    session.commit()
    response.set_cookie(cookie_name(slug), token, max_age=60 * 60 * 24 * 30, path=f"/e/{slug}",
                        httponly=True, samesite="lax", secure=w.settings.secure_cookies)
    return state(session, Visit(exp, cfg, p), w)


def _new_participant(session: Session, request: Request, exp: Experiment, cfg: TestConfig,
                     crowd_id: Optional[crowd.CrowdIdentity], key_hash: Optional[str], token: str,
                     body: JoinBody) -> Participant:
    """A new participant, if the test is open, the link complete and the address within its hourly limit."""
    if exp.status != "open":
        raise HTTPException(403, "this test is closed")
    if cfg.crowd.platform != "none" and crowd_id is None:
        raise HTTPException(400, f"the test link lacks the participant id parameter {cfg.crowd.url_param}")
    address = throttle.address_key(request.client.host if request.client else "unknown")
    wait = throttle.join_wait(session, exp.id, address, cfg.joins_per_address_per_hour)
    if wait:
        minutes = math.ceil(wait.total_seconds() / 60)
        raise HTTPException(429, f"too many new participants from your network in the last hour; try again in "
                                 f"{minutes} min", headers={"Retry-After": str(math.ceil(wait.total_seconds()))})
    throttle.record_join(session, exp.id, address)
    p = crowd.new_participant(exp, crowd_id, key_hash, token, random.SystemRandom().randrange(2**31),
                              request.headers.get("user-agent") or "", body.audio_env.model_dump(exclude_none=True))
    session.add(p)
    return p


@router.get("/api/state")
@releases_session
def get_state(slug: str, token: Optional[str] = Depends(session_token), w: Wiring = Depends(wiring),
              session: Session = Depends(db)) -> dict:
    return state(session, visit(session, slug, token), w)


@router.get("/api/trials/{position}")
@releases_session
def get_trial(slug: str, position: Position, token: Optional[str] = Depends(session_token),
              w: Wiring = Depends(wiring), session: Session = Depends(db)) -> dict:
    v = visit(session, slug, token)
    trial = open_trial(session, v.p, position)
    ratings = session.execute(select(Rating).where(Rating.trial_id == trial.id)
                              .order_by(Rating.button_index)).scalars().all()
    _, n = current_position(session, v.p)
    design = v.cfg.design
    n_frames = session.get(Stimulus, trial.reference_stimulus_id).n_frames
    return {"position": position, "n_trials": n, "is_training": trial.is_training, "n_frames": n_frames,
            "reference_url": audio_url(w, v, position, "ref"),
            "buttons": [{"index": r.button_index, "url": audio_url(w, v, position, str(r.button_index)),
                         "score": r.score, "plays": r.plays, "listen_ms": r.listen_ms, "n_moves": r.n_moves}
                        for r in ratings],
            "version": trial.version, "seq": trial.save_seq, "reference_plays": trial.reference_plays,
            "n_switches": trial.n_switches, "loop": trial.loop or None,
            "min_seconds": listening.min_trial_seconds(v.cfg, n_frames, v.exp.sample_rate),
            "listened_seconds": listening.seconds_listened(trial),
            "require": {"play_all": design.require_play_all, "rate_all": design.require_rate_all,
                        "one_at_100": design.require_one_at_100}}


def submitted_trial(session: Session, p: Participant, position: int) -> Optional[Trial]:
    return session.scalar(select(Trial).where(Trial.participant_id == p.id, Trial.position == position,
                                              Trial.status == "submitted"))


@router.put("/api/trials/{position}")
@releases_session
def save_trial(slug: str, position: Position, body: SaveBody, token: Optional[str] = Depends(session_token),
               session: Session = Depends(db)) -> dict:
    v = visit(session, slug, token, write=True, saving=True)
    done = submitted_trial(session, v.p, position)
    if done is not None:  # submitted from another tab (or this page's own save arrived after its submit)
        raise saving.conflict(done)
    trial = open_trial(session, v.p, position)
    outcome = saving.apply_save(session, v.exp.id, trial, body)
    session.commit()
    if outcome is saving.Outcome.CONFLICT:
        raise saving.conflict(trial)
    if outcome is saving.Outcome.STALE:
        return {"saved": False, "stale": True, "seq": body.seq, "latest_seq": trial.save_seq,
                "version": trial.version}
    return {"saved": True, "seq": body.seq, "version": trial.version}


@router.post("/api/trials/{position}/submit")
@releases_session
def submit_trial(slug: str, position: Position, body: SaveBody, token: Optional[str] = Depends(session_token),
                 w: Wiring = Depends(wiring), session: Session = Depends(db)) -> dict:
    v = visit(session, slug, token, write=True, saving=True)
    done = submitted_trial(session, v.p, position)
    if done is not None and (done.saved_by or "") == (body.tab or ""):  # a retry of this page's lost submit
        return state(session, v, w)
    if done is not None:  # another tab submitted it, with its own ratings
        raise saving.conflict(done)
    trial = open_trial(session, v.p, position)
    if saving.apply_save(session, v.exp.id, trial, body) is saving.Outcome.CONFLICT:
        session.rollback()
        raise saving.conflict(trial)
    session.flush()
    ratings = session.execute(select(Rating).where(Rating.trial_id == trial.id)).scalars().all()
    unplayed = sorted(r.button_index for r in ratings if r.plays < 1)
    unrated = sorted(r.button_index for r in ratings if r.score is None)
    design = v.cfg.design
    if design.require_play_all and unplayed:
        session.rollback()
        raise HTTPException(422, {"message": "play every sound before going on", "unplayed": unplayed})
    if design.require_rate_all and unrated:
        session.rollback()
        raise HTTPException(422, {"message": "rate every sound before going on", "unrated": unrated})
    if design.require_one_at_100 and not any(r.score == 100 for r in ratings):
        session.rollback()
        raise HTTPException(422, {"message": "rate at least one sound 100 (the hidden reference should be)",
                                  "none_at_100": True})
    n_frames = session.get(Stimulus, trial.reference_stimulus_id).n_frames
    refusal = listening.submit_refusal(trial, ratings, v.cfg, n_frames, v.exp.sample_rate)
    if refusal is not None:
        session.rollback()
        raise HTTPException(422, refusal)
    trial.status, trial.submitted_at = "submitted", utcnow()
    following = session.scalar(select(Trial).where(Trial.participant_id == v.p.id, Trial.position == position + 1))
    if following is not None:
        following.started_at = trial.submitted_at
    session.commit()
    return state(session, v, w)


@router.post("/api/finish")
@releases_session
def finish(slug: str, token: Optional[str] = Depends(session_token), session: Session = Depends(db)) -> dict:
    v = visit(session, slug, token, write=True)
    current, n = current_position(session, v.p)
    if current < n:
        raise HTTPException(409, f"{n - current} trials are still to do")
    if v.p.status != "completed":
        v.p.status, v.p.finished_at = "completed", utcnow()
        v.p.completion_code = secrets.token_hex(5).upper()
        session.commit()
    return completion(v.cfg, v.p)


@router.get("/a/{position}/{button}/{mac}")
@releases_session
def audio(slug: str, position: Position, button: str, mac: str, token: Optional[str] = Depends(session_token),
          w: Wiring = Depends(wiring), session: Session = Depends(db)) -> Response:
    """A sound of one of the participant's trials, as fresh bytes (``dither``); the server notes that it sent it."""
    v = visit(session, slug, token, write=True)
    if not auth.signature_ok(w.url_key, mac, v.p.public_id, position, button):
        raise HTTPException(403, "this audio link is not for this session")
    trial = session.scalar(select(Trial).where(Trial.participant_id == v.p.id, Trial.position == position))
    if trial is None:
        raise HTTPException(404, "no such trial")
    if button != "ref" and not button.isdigit():
        raise HTTPException(404, "no such button")
    if button == "ref":
        stim = session.get(Stimulus, trial.reference_stimulus_id)
    else:
        rating = session.scalar(select(Rating).where(Rating.trial_id == trial.id,
                                                     Rating.button_index == int(button)))
        if rating is None:
            raise HTTPException(404, "no such button")
        stim = session.get(Stimulus, rating.stimulus_id)
    path = (w.data_dir / stim.path).resolve()
    if not path.is_relative_to(w.data_dir) or not path.is_file():
        raise HTTPException(410, "this stimulus is missing on the server")
    if trial.status == "open":
        listening.note_served(session, trial, None if button == "ref" else int(button))
    session.commit()  # the write lock is let go before the file is read and dithered
    return Response(dither.served_wav(path), media_type="audio/wav")
