"""The participant's API under /e/<test>: join, trials with autosave and submit, finish, and per-session audio.

A participant is the holder of an HttpOnly cookie scoped to the test's path; the browser only ever sees button
numbers and signed audio links, never which condition sits behind a button.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
import secrets
from dataclasses import dataclass
from typing import Optional

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mushra_web import auth
from mushra_web.db import Experiment, Participant, Rating, Stimulus, TakeoverGrant, Trial, begin_write, utcnow
from mushra_web.schema import TestConfig
from mushra_web.web import Position, Wiring, config, db, experiment, releases_session, wiring

SCALE = [[80, "Excellent"], [60, "Good"], [40, "Fair"], [20, "Poor"], [0, "Bad"]]

router = APIRouter(prefix="/e/{slug}")


# ---- payloads ----

class _Payload(BaseModel):
    """Strict: a JSON number is the only thing a number field takes (no ``true`` for 1, no ``"42"`` for 42)."""

    model_config = ConfigDict(extra="forbid", strict=True)


class AudioEnv(_Payload):
    """What the browser's AudioContext reports: the playback rate in Hz and latencies in seconds."""

    sampleRate: Optional[float] = Field(default=None, ge=3000, le=768000, allow_inf_nan=False)
    baseLatency: Optional[float] = Field(default=None, ge=0, le=10, allow_inf_nan=False)
    outputLatency: Optional[float] = Field(default=None, ge=0, le=10, allow_inf_nan=False)
    maxChannelCount: Optional[int] = Field(default=None, ge=0, le=1024)


class JoinBody(_Payload):
    params: dict[str, str] = Field(default_factory=dict, max_length=20)
    audio_env: AudioEnv = Field(default_factory=AudioEnv)

    @field_validator("params")
    @classmethod
    def _short(cls, v: dict) -> dict:
        for k, val in v.items():
            if len(k) > 64 or len(val) > 200:
                raise ValueError("parameter names are limited to 64 characters and values to 200")
        return v


class RatingIn(_Payload):
    button: int = Field(ge=0, le=63)
    score: Optional[float] = Field(default=None, ge=0, le=100, allow_inf_nan=False)
    plays: int = Field(default=0, ge=0, le=100_000)
    listen_ms: int = Field(default=0, ge=0, le=100_000_000)
    n_moves: int = Field(default=0, ge=0, le=1_000_000)


class LoopIn(_Payload):
    enabled: bool = True
    start: int = Field(ge=0, le=2**31)
    end: int = Field(ge=0, le=2**31)


class SaveBody(_Payload):
    seq: int = Field(ge=1, le=2**31)
    ratings: list[RatingIn] = Field(default_factory=list, max_length=64)
    reference_plays: int = Field(default=0, ge=0, le=100_000)
    n_switches: int = Field(default=0, ge=0, le=10_000_000)
    loop: Optional[LoopIn] = None


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
           "finished": v.p.status == "completed", "sample_rate": v.exp.sample_rate, "channels": v.exp.channels,
           "crossfade_ms": v.cfg.design.crossfade_ms, "min_loop_s": v.cfg.design.min_loop_s, "scale": SCALE,
           "testhook": w.settings.test_mode}
    if v.p.status == "completed":
        out["completion"] = completion(v.cfg, v.p)
    return out


def audio_url(w: Wiring, v: Visit, position: int, button: str) -> str:
    mac = auth.sign(w.url_key, v.p.public_id, position, button)
    return f"/e/{v.exp.slug}/a/{position}/{button}/{mac}"


def open_trial(session: Session, p: Participant, position: int) -> Trial:
    current, n = current_position(session, p)
    if position < 0 or position >= n:
        raise HTTPException(404, f"no trial {position}; this plan has {n}")
    if position != current:
        raise HTTPException(409, f"trial {position} is not the current one ({current})")
    return session.scalar(select(Trial).where(Trial.participant_id == p.id, Trial.position == position))


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


def apply_save(session: Session, trial: Trial, body: SaveBody) -> int:
    """Store a save unless one with a higher or equal sequence number is stored already.

    Returns the latest sequence number stored before this save: when it is above ``body.seq`` the save was
    stale (an older save arriving late) and nothing changed; when equal, it was a retry of the stored save.
    """
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
    latest = max((r.save_seq for r in ratings.values()), default=0)
    if body.seq <= latest:
        return latest
    now = utcnow()
    for item in body.ratings:
        row = ratings[item.button]
        row.score, row.n_moves = item.score, item.n_moves
        row.plays, row.listen_ms = max(row.plays, item.plays), max(row.listen_ms, item.listen_ms)
        row.save_seq, row.updated_at = body.seq, now
    trial.reference_plays = max(trial.reference_plays, body.reference_plays)
    trial.n_switches = max(trial.n_switches, body.n_switches)
    if body.loop is not None:
        trial.loop = body.loop.model_dump()
    return latest


def rewrapped(wav: bytes, secret: str) -> bytes:
    """The WAV file with a JUNK chunk of secret-derived length and content appended after its own chunks.

    The hidden reference is the reference's file: served as stored, its bytes (and a file-based ETag) would tell the
    two apart in the network tab. Re-wrapped per session and button, every sound has its own bytes and length while
    every sample played stays the same; no ETag or Last-Modified is sent.
    """
    if wav[:4] != b"RIFF" or wav[8:12] != b"WAVE":
        raise HTTPException(500, "a stored stimulus is not a RIFF/WAVE file")
    size = int.from_bytes(wav[4:8], "little")
    pad = 2 * (int(secret[:4], 16) % 2048)  # 0-4094 bytes, even so that the chunk needs no pad byte
    junk = b"JUNK" + pad.to_bytes(4, "little") + hashlib.shake_256(secret.encode()).digest(pad)
    chunks = wav[12:8 + size] + junk
    return b"RIFF" + (4 + len(chunks)).to_bytes(4, "little") + b"WAVE" + chunks


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
    begin_write(session)
    exp = experiment(session, slug)
    cfg = config(exp.config_json)
    p = find_participant(session, exp, token)
    external = body.params.get(cfg.crowd.url_param) if cfg.crowd.url_param else None
    env = body.audio_env.model_dump(exclude_none=True)
    if p is not None and external and p.external_id != external:
        p = None  # a different worker on the same browser: a new participant
    if p is None and external:
        p = session.scalar(select(Participant).where(Participant.experiment_id == exp.id,
                                                     Participant.external_id == external))
        if p is not None and p.status == "completed":
            raise HTTPException(409, "this participant id has already completed the test")
        if p is not None:  # the same id from another browser, or after clearing cookies
            take_over(session, cfg, p)
            token = auth.new_token()
            p.token_hash = auth.token_hash(token)
    if p is None:
        if exp.status != "open":
            raise HTTPException(403, "this test is closed")
        if cfg.crowd.platform != "none" and not external:
            raise HTTPException(400, f"the test link lacks the participant id parameter {cfg.crowd.url_param}")
        token = auth.new_token()
        p = Participant(public_id=secrets.token_hex(8), experiment_id=exp.id, token_hash=auth.token_hash(token),
                        external_id=external, study_id=body.params.get("STUDY_ID") or body.params.get("hitId"),
                        crowd_session_id=body.params.get("SESSION_ID") or body.params.get("assignmentId"),
                        seed=random.SystemRandom().randrange(2**31),
                        user_agent=(request.headers.get("user-agent") or "")[:400], audio_env=env)
        session.add(p)
        try:
            session.flush()
        except IntegrityError:
            session.rollback()
            raise HTTPException(409, "this participant id has just joined from another browser") from None
        from mushra_web.plan import build_plan

        build_plan(session, exp, cfg, p)
    elif env:
        p.audio_env = env
    session.commit()
    response.set_cookie(cookie_name(slug), token, max_age=60 * 60 * 24 * 30, path=f"/e/{slug}",
                        httponly=True, samesite="lax", secure=w.settings.secure_cookies)
    return state(session, Visit(exp, cfg, p), w)


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
    return {"position": position, "n_trials": n, "is_training": trial.is_training,
            "n_frames": session.get(Stimulus, trial.reference_stimulus_id).n_frames,
            "reference_url": audio_url(w, v, position, "ref"),
            "buttons": [{"index": r.button_index, "url": audio_url(w, v, position, str(r.button_index)),
                         "score": r.score, "plays": r.plays, "listen_ms": r.listen_ms, "n_moves": r.n_moves}
                        for r in ratings],
            "seq": max((r.save_seq for r in ratings), default=0), "reference_plays": trial.reference_plays,
            "n_switches": trial.n_switches, "loop": trial.loop or None,
            "require": {"play_all": design.require_play_all, "rate_all": design.require_rate_all,
                        "one_at_100": design.require_one_at_100}}


@router.put("/api/trials/{position}")
@releases_session
def save_trial(slug: str, position: Position, body: SaveBody, token: Optional[str] = Depends(session_token),
               session: Session = Depends(db)) -> dict:
    v = visit(session, slug, token, write=True, saving=True)
    latest = apply_save(session, open_trial(session, v.p, position), body)
    session.commit()
    if body.seq < latest:
        return {"saved": False, "stale": True, "seq": body.seq, "latest_seq": latest}
    return {"saved": True, "seq": body.seq}


@router.post("/api/trials/{position}/submit")
@releases_session
def submit_trial(slug: str, position: Position, body: SaveBody, token: Optional[str] = Depends(session_token),
                 w: Wiring = Depends(wiring), session: Session = Depends(db)) -> dict:
    v = visit(session, slug, token, write=True, saving=True)
    done = session.scalar(select(Trial).where(Trial.participant_id == v.p.id, Trial.position == position,
                                              Trial.status == "submitted"))
    if done is not None:  # a retry of a submit whose answer was lost: same answer, nothing changed
        return state(session, v, w)
    trial = open_trial(session, v.p, position)
    apply_save(session, trial, body)
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
    v = visit(session, slug, token)
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
    wav = rewrapped(path.read_bytes(), auth.sign(w.url_key, "pad", v.p.public_id, position, button))
    return Response(wav, media_type="audio/wav", headers={"Cache-Control": "private, max-age=3600"})
