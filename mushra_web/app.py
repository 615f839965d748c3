"""The web service: the participant's API and audio, the admin API, and the two static pages.

No state is held in memory between requests: participants, plans, ratings, admin sessions and the URL-signing key
all live in the database, so ``serve --workers N`` against PostgreSQL behaves like one process.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
import json
import math
import os
import random
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Iterator, Optional

import anyio
from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi import Path as UrlPath
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from mushra_web import auth
from mushra_web.db import (REQUEST_THREADS, Experiment, ItemUse, Participant, Rating, Stimulus, TakeoverGrant, Trial,
                           begin_write, init_db, make_engine, session_factory, utcnow)
from mushra_web.schema import TestConfig

STATIC = Path(__file__).parent / "static"
MAX_BODY = 64 * 1024
SCALE = [[80, "Excellent"], [60, "Good"], [40, "Fair"], [20, "Poor"], [0, "Bad"]]
ADMIN_COOKIE = "mushra_admin"
# A trial position in a URL: bounded to what the database's integer column holds, so no value can overflow it.
Position = Annotated[int, UrlPath(ge=0, le=2**31 - 1)]


@dataclass(frozen=True)
class Settings:
    """How the app is wired: database, where stimuli live, cookie security and the browser-test hook."""

    database_url: Optional[str] = None
    data_dir: Path = Path("mushra_data")
    secure_cookies: bool = False
    test_mode: bool = False

    @classmethod
    def from_env(cls) -> "Settings":
        return cls(database_url=os.environ.get("MUSHRA_DATABASE_URL"),
                   data_dir=Path(os.environ.get("MUSHRA_DATA_DIR", "mushra_data")),
                   secure_cookies=os.environ.get("MUSHRA_SECURE_COOKIES", "0") == "1",
                   test_mode=os.environ.get("MUSHRA_TEST_MODE", "0") == "1")


@functools.lru_cache(maxsize=64)
def _config(config_json: str) -> TestConfig:
    """Configs are immutable once stored, so parsing is memoised on their text."""
    return TestConfig.model_validate(json.loads(config_json))


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


class LoginBody(_Payload):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class StatusBody(_Payload):
    status: str = Field(pattern="^(open|closed)$")


# ---- the app ----

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"), (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
    (b"content-security-policy",
     b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self' blob:; "
     b"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"),
]


class _Guard:
    """Size limit on request bodies, JSON-only writes, and headers that keep pages from being framed or sniffed.

    A plain ASGI middleware: it counts the body as it streams in instead of buffering it a second time.
    """

    def __init__(self, app) -> None:  # noqa: ANN001
        self.app = app

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        if scope["method"] in ("POST", "PUT", "DELETE", "PATCH"):
            length = headers.get(b"content-length")
            if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
                await _reject(send, 413, f"request body over {MAX_BODY} bytes")
                return
            has_body = (length is not None and length != b"0") or b"transfer-encoding" in headers
            if has_body and not headers.get(b"content-type", b"").startswith(b"application/json"):
                await _reject(send, 415, "request bodies must be application/json")
                return
        received, started, rejected = 0, False, False

        async def counted_receive():  # noqa: ANN202
            nonlocal received, rejected
            message = await receive()
            received += len(message.get("body", b""))
            if received > MAX_BODY and not rejected:
                rejected = True  # answer now; the app sees a client that went away and its answer is dropped
                if not started:
                    await _reject(send, 413, f"request body over {MAX_BODY} bytes")
                return {"type": "http.disconnect"}
            return message

        async def send_with_headers(message) -> None:  # noqa: ANN001
            nonlocal started
            if rejected:
                return
            if message["type"] == "http.response.start":
                started = True
                present = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []),
                                      *((k, v) for k, v in SECURITY_HEADERS if k not in present)]
            await send(message)

        await self.app(scope, counted_receive, send_with_headers)


async def _reject(send, status: int, detail: str) -> None:  # noqa: ANN001
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *SECURITY_HEADERS]})
    await send({"type": "http.response.body", "body": body})


def _rewrapped(wav: bytes, secret: str) -> bytes:
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


async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 naming each field and the problem, without echoing the input: a value such as 1e400 or NaN cannot be
    written as JSON, and echoing it would turn a clear refusal into a 500."""
    errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
    return JSONResponse({"detail": errors}, status_code=422)


def _releases_session(handler):  # noqa: ANN001, ANN202
    """Close the request's session when the handler returns or raises, inside the handler's own thread.

    FastAPI would close it later, in another thread-pool task: until then a SQLite write lock (or a pooled
    connection) would be held by a request that needs a free thread to let go of it.
    """
    @functools.wraps(handler)
    def run(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        try:
            return handler(*args, **kwargs)
        finally:
            kwargs["session"].close()

    return run


@contextlib.asynccontextmanager
async def _lifespan(_app: FastAPI):  # noqa: ANN202
    anyio.to_thread.current_default_thread_limiter().total_tokens = REQUEST_THREADS
    yield


def create_app(settings: Optional[Settings] = None) -> FastAPI:
    """The ASGI app; tables are created if missing, so a fresh database needs no separate step."""
    settings = settings or Settings.from_env()
    engine = make_engine(settings.database_url)
    init_db(engine)
    sessions: sessionmaker = session_factory(engine)
    data_dir = Path(settings.data_dir).resolve()
    app = FastAPI(title="mushra-web", docs_url=None, redoc_url=None, openapi_url=None, lifespan=_lifespan)
    app.state.engine = engine
    app.state.settings = settings
    app.add_middleware(_Guard)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    def db() -> Iterator[Session]:
        with sessions() as session:
            yield session

    with sessions() as session:  # made once and kept in the database: every worker reads the same key
        url_key = auth.server_secret(session)

    def cookie_name(slug: str) -> str:
        return f"mushra_p_{slug}"

    def experiment(session: Session, slug: str) -> Experiment:
        exp = session.scalar(select(Experiment).where(Experiment.slug == slug))
        if exp is None:
            raise HTTPException(404, "no such test")
        return exp

    def participant(request: Request, session: Session, exp: Experiment) -> Participant:
        token = request.cookies.get(cookie_name(exp.slug))
        p = None
        if token:
            p = session.scalar(select(Participant).where(Participant.token_hash == auth.token_hash(token),
                                                         Participant.experiment_id == exp.id))
        if p is None:
            raise HTTPException(401, "no participant session for this test; open the test link again")
        return p

    def current_position(session: Session, p: Participant) -> tuple[int, int]:
        """(first trial not yet submitted, number of trials)."""
        n = session.scalar(select(func.count()).select_from(Trial).where(Trial.participant_id == p.id)) or 0
        done = session.scalar(select(func.count()).select_from(Trial).where(
            Trial.participant_id == p.id, Trial.status == "submitted")) or 0
        return done, n

    def state(session: Session, exp: Experiment, p: Participant) -> dict:
        cfg = _config(exp.config_json)
        position, n = current_position(session, p)
        out = {"title": exp.title, "instructions": cfg.instructions, "n_trials": n, "position": position,
               "finished": p.status == "completed", "sample_rate": exp.sample_rate, "channels": exp.channels,
               "crossfade_ms": cfg.design.crossfade_ms, "min_loop_s": cfg.design.min_loop_s, "scale": SCALE,
               "testhook": settings.test_mode}
        if p.status == "completed":
            out["completion"] = completion(cfg, p)
        return out

    def completion(cfg: TestConfig, p: Participant) -> dict:
        url = cfg.crowd.complete_url.replace("{code}", p.completion_code) if cfg.crowd.complete_url else None
        return {"code": p.completion_code, "redirect_url": url}

    def audio_url(session: Session, exp: Experiment, p: Participant, position: int, button: str) -> str:
        mac = auth.sign(url_key, p.public_id, position, button)
        return f"/e/{exp.slug}/a/{position}/{button}/{mac}"

    def set_participant_cookie(response: Response, slug: str, token: str) -> None:
        response.set_cookie(cookie_name(slug), token, max_age=60 * 60 * 24 * 30, path=f"/e/{slug}",
                            httponly=True, samesite="lax", secure=settings.secure_cookies)

    # ---- participant pages and API ----

    @app.get("/e/{slug}", response_class=HTMLResponse)
    @app.get("/e/{slug}/", response_class=HTMLResponse)
    @_releases_session
    def participant_page(slug: str, session: Session = Depends(db)) -> FileResponse:
        if session.scalar(select(Experiment.id).where(Experiment.slug == slug)) is None:
            return FileResponse(STATIC / "unknown-test.html", status_code=404, media_type="text/html")
        return FileResponse(STATIC / "participant.html", media_type="text/html")

    @app.get("/e/{slug}/api/info")
    @_releases_session
    def info(slug: str, session: Session = Depends(db)) -> dict:
        """What a newcomer reads before joining, and the rate to open the audio at (so that it is the one reported)."""
        exp = experiment(session, slug)
        cfg = _config(exp.config_json)
        return {"title": exp.title, "instructions": cfg.instructions, "sample_rate": exp.sample_rate,
                "status": exp.status}

    @app.post("/e/{slug}/api/join")
    @_releases_session
    def join(slug: str, body: JoinBody, request: Request, response: Response,
             session: Session = Depends(db)) -> dict:
        begin_write(session)
        exp = experiment(session, slug)
        cfg = _config(exp.config_json)
        token = request.cookies.get(cookie_name(slug))
        p = None
        if token:
            p = session.scalar(select(Participant).where(Participant.token_hash == auth.token_hash(token),
                                                         Participant.experiment_id == exp.id))
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
        set_participant_cookie(response, slug, token)
        return state(session, exp, p)

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

    @app.get("/e/{slug}/api/state")
    @_releases_session
    def get_state(slug: str, request: Request, session: Session = Depends(db)) -> dict:
        exp = experiment(session, slug)
        return state(session, exp, participant(request, session, exp))

    def open_trial(session: Session, p: Participant, position: int) -> Trial:
        current, n = current_position(session, p)
        if position < 0 or position >= n:
            raise HTTPException(404, f"no trial {position}; this plan has {n}")
        if position != current:
            raise HTTPException(409, f"trial {position} is not the current one ({current})")
        trial = session.scalar(select(Trial).where(Trial.participant_id == p.id, Trial.position == position))
        return trial

    @app.get("/e/{slug}/api/trials/{position}")
    @_releases_session
    def get_trial(slug: str, position: Position, request: Request, session: Session = Depends(db)) -> dict:
        exp = experiment(session, slug)
        cfg = _config(exp.config_json)
        p = participant(request, session, exp)
        trial = open_trial(session, p, position)
        ratings = session.execute(select(Rating).where(Rating.trial_id == trial.id)
                                  .order_by(Rating.button_index)).scalars().all()
        _, n = current_position(session, p)
        return {"position": position, "n_trials": n, "is_training": trial.is_training,
                "n_frames": session.get(Stimulus, trial.reference_stimulus_id).n_frames,
                "reference_url": audio_url(session, exp, p, position, "ref"),
                "buttons": [{"index": r.button_index, "url": audio_url(session, exp, p, position, str(r.button_index)),
                             "score": r.score, "plays": r.plays, "listen_ms": r.listen_ms, "n_moves": r.n_moves}
                            for r in ratings],
                "seq": max((r.save_seq for r in ratings), default=0), "reference_plays": trial.reference_plays,
                "n_switches": trial.n_switches, "loop": trial.loop or None,
                "require": {"play_all": cfg.design.require_play_all, "rate_all": cfg.design.require_rate_all,
                            "one_at_100": cfg.design.require_one_at_100}}

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

    def writable(exp: Experiment) -> None:
        if exp.status != "open":
            raise HTTPException(403, "this test is closed: nothing more can be saved")

    @app.put("/e/{slug}/api/trials/{position}")
    @_releases_session
    def save_trial(slug: str, position: Position, body: SaveBody, request: Request,
                   session: Session = Depends(db)) -> dict:
        begin_write(session)
        exp = experiment(session, slug)
        writable(exp)
        p = participant(request, session, exp)
        trial = open_trial(session, p, position)
        latest = apply_save(session, trial, body)
        session.commit()
        if body.seq < latest:
            return {"saved": False, "stale": True, "seq": body.seq, "latest_seq": latest}
        return {"saved": True, "seq": body.seq}

    @app.post("/e/{slug}/api/trials/{position}/submit")
    @_releases_session
    def submit_trial(slug: str, position: Position, body: SaveBody, request: Request,
                     session: Session = Depends(db)) -> dict:
        begin_write(session)
        exp = experiment(session, slug)
        cfg = _config(exp.config_json)
        writable(exp)
        p = participant(request, session, exp)
        done = session.scalar(select(Trial).where(Trial.participant_id == p.id, Trial.position == position,
                                                  Trial.status == "submitted"))
        if done is not None:  # a retry of a submit whose answer was lost: same answer, nothing changed
            return state(session, exp, p)
        trial = open_trial(session, p, position)
        apply_save(session, trial, body)
        session.flush()
        ratings = session.execute(select(Rating).where(Rating.trial_id == trial.id)).scalars().all()
        unplayed = sorted(r.button_index for r in ratings if r.plays < 1)
        unrated = sorted(r.button_index for r in ratings if r.score is None)
        if cfg.design.require_play_all and unplayed:
            session.rollback()
            raise HTTPException(422, {"message": "play every sound before going on", "unplayed": unplayed})
        if cfg.design.require_rate_all and unrated:
            session.rollback()
            raise HTTPException(422, {"message": "rate every sound before going on", "unrated": unrated})
        if cfg.design.require_one_at_100 and not any(r.score == 100 for r in ratings):
            session.rollback()
            raise HTTPException(422, {"message": "rate at least one sound 100 (the hidden reference should be)",
                                      "none_at_100": True})
        trial.status, trial.submitted_at = "submitted", utcnow()
        following = session.scalar(select(Trial).where(Trial.participant_id == p.id, Trial.position == position + 1))
        if following is not None:
            following.started_at = trial.submitted_at
        session.commit()
        return state(session, exp, p)

    @app.post("/e/{slug}/api/finish")
    @_releases_session
    def finish(slug: str, request: Request, session: Session = Depends(db)) -> dict:
        begin_write(session)
        exp = experiment(session, slug)
        p = participant(request, session, exp)
        current, n = current_position(session, p)
        if current < n:
            raise HTTPException(409, f"{n - current} trials are still to do")
        if p.status != "completed":
            p.status, p.finished_at = "completed", utcnow()
            p.completion_code = secrets.token_hex(5).upper()
            session.commit()
        return completion(_config(exp.config_json), p)

    @app.get("/e/{slug}/a/{position}/{button}/{mac}")
    @_releases_session
    def audio(slug: str, position: Position, button: str, mac: str, request: Request,
              session: Session = Depends(db)) -> FileResponse:
        exp = experiment(session, slug)
        p = participant(request, session, exp)
        if not auth.signature_ok(url_key, mac, p.public_id, position, button):
            raise HTTPException(403, "this audio link is not for this session")
        trial = session.scalar(select(Trial).where(Trial.participant_id == p.id, Trial.position == position))
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
        path = (data_dir / stim.path).resolve()
        if not path.is_relative_to(data_dir) or not path.is_file():
            raise HTTPException(410, "this stimulus is missing on the server")
        wav = _rewrapped(path.read_bytes(), auth.sign(url_key, "pad", p.public_id, position, button))
        return Response(wav, media_type="audio/wav", headers={"Cache-Control": "private, max-age=3600"})

    # ---- admin ----

    def admin(request: Request, session: Session = Depends(db)):  # noqa: ANN202
        row = auth.find_admin_session(session, request.cookies.get(ADMIN_COOKIE))
        if row is None:
            raise HTTPException(401, "log in first")
        if request.method not in ("GET", "HEAD"):
            sent = request.headers.get("x-csrf-token", "")
            if not secrets.compare_digest(sent, row.csrf_token):
                raise HTTPException(403, "missing or wrong CSRF token")
        session.commit()  # end the read here: the handler opens its own (write) transaction in its thread
        return row

    @app.get("/admin", response_class=HTMLResponse)
    def admin_page() -> FileResponse:
        return FileResponse(STATIC / "admin.html", media_type="text/html")

    @app.post("/admin/api/login")
    @_releases_session
    def login(body: LoginBody, request: Request, response: Response, session: Session = Depends(db)) -> dict:
        begin_write(session)
        address = request.client.host if request.client else "unknown"
        wait = auth.login_wait(session, body.username, address)
        if wait:
            seconds = math.ceil(wait.total_seconds())
            raise HTTPException(429, f"too many failed logins; wait {seconds} s before trying again",
                                headers={"Retry-After": str(seconds)})
        user = auth.check_password(session, body.username, body.password)
        auth.record_login(session, body.username, address, user is not None)
        if user is None:
            session.commit()
            raise HTTPException(401, "wrong user name or password")
        token, csrf = auth.open_admin_session(session, user)
        session.commit()
        response.set_cookie(ADMIN_COOKIE, token, max_age=auth.ADMIN_SESSION_HOURS * 3600, path="/admin",
                            httponly=True, samesite="strict", secure=settings.secure_cookies)
        return {"username": user.username, "csrf": csrf}

    @app.get("/admin/api/me")
    @_releases_session
    def me(row=Depends(admin), session: Session = Depends(db)) -> dict:  # noqa: ANN001
        from mushra_web.db import AdminUser

        return {"username": session.get(AdminUser, row.user_id).username, "csrf": row.csrf_token}

    @app.post("/admin/api/logout")
    @_releases_session
    def logout(response: Response, row=Depends(admin), session: Session = Depends(db)) -> dict:  # noqa: ANN001
        begin_write(session)
        session.delete(session.merge(row))
        session.commit()
        response.delete_cookie(ADMIN_COOKIE, path="/admin")
        return {"ok": True}

    @app.get("/admin/api/experiments")
    @_releases_session
    def experiments(_=Depends(admin), session: Session = Depends(db)) -> list[dict]:  # noqa: ANN001
        from mushra_web.export import progress

        return [progress(session, exp) for exp in session.scalars(select(Experiment).order_by(Experiment.id))]

    @app.post("/admin/api/experiments/{slug}/status")
    @_releases_session
    def set_status(slug: str, body: StatusBody, _=Depends(admin),  # noqa: ANN001
                   session: Session = Depends(db)) -> dict:
        begin_write(session)
        exp = experiment(session, slug)
        exp.status = body.status
        session.commit()
        return {"slug": slug, "status": exp.status}

    @app.delete("/admin/api/experiments/{slug}/participants/{public_id}")
    @_releases_session
    def delete_participant(slug: str, public_id: str, _=Depends(admin),  # noqa: ANN001
                           session: Session = Depends(db)) -> dict:
        begin_write(session)
        exp = experiment(session, slug)
        p = session.scalar(select(Participant).where(Participant.experiment_id == exp.id,
                                                     Participant.public_id == public_id))
        if p is None:
            raise HTTPException(404, "no such participant")
        items = session.scalars(select(Trial.item_id).where(Trial.participant_id == p.id,
                                                            Trial.is_training.is_(False))).all()
        for item in items:
            use = session.get(ItemUse, (exp.id, item))
            if use is not None:
                use.uses = max(0, use.uses - 1)
        trial_ids = select(Trial.id).where(Trial.participant_id == p.id).scalar_subquery()
        session.execute(delete(Rating).where(Rating.trial_id.in_(trial_ids)))
        session.execute(delete(Trial).where(Trial.participant_id == p.id))
        session.execute(delete(Participant).where(Participant.id == p.id))
        session.commit()
        return {"deleted": public_id}

    @app.post("/admin/api/experiments/{slug}/participants/{public_id}/takeover")
    @_releases_session
    def allow_takeover(slug: str, public_id: str, _=Depends(admin),  # noqa: ANN001
                       session: Session = Depends(db)) -> dict:
        begin_write(session)
        exp = experiment(session, slug)
        p = session.scalar(select(Participant).where(Participant.experiment_id == exp.id,
                                                     Participant.public_id == public_id))
        if p is None:
            raise HTTPException(404, "no such participant")
        if session.get(TakeoverGrant, p.id) is None:
            session.add(TakeoverGrant(participant_id=p.id))
        session.commit()
        return {"participant_id": public_id, "takeover_allowed": True}

    @app.get("/admin/api/experiments/{slug}/export.{fmt}")
    @_releases_session
    def export(slug: str, fmt: str, _=Depends(admin), session: Session = Depends(db)) -> Response:  # noqa: ANN001
        from mushra_web import export as ex

        exp = experiment(session, slug)
        rows = ex.export_rows(session, exp)
        name = f"{slug}-{exp.config_sha256[:12]}"
        if fmt == "csv":
            return Response(ex.to_csv(rows), media_type="text/csv",
                            headers={"Content-Disposition": f'attachment; filename="{name}.csv"'})
        if fmt == "parquet":
            return Response(ex.to_parquet(rows, exp), media_type="application/vnd.apache.parquet",
                            headers={"Content-Disposition": f'attachment; filename="{name}.parquet"'})
        if fmt == "json":
            return JSONResponse({"config_sha256": exp.config_sha256, "rows": rows})
        raise HTTPException(404, "export formats: csv, parquet, json")

    @app.get("/admin/api/experiments/{slug}/report", response_class=HTMLResponse)
    @_releases_session
    def report(slug: str, _=Depends(admin), session: Session = Depends(db)) -> HTMLResponse:  # noqa: ANN001
        from mushra_web.export import export_rows
        from mushra_web.report import build_report, report_html

        exp = experiment(session, slug)
        rep = build_report(export_rows(session, exp), exp)
        return HTMLResponse(report_html(rep), headers={"Content-Security-Policy":
                                                       "default-src 'none'; img-src data:; style-src 'unsafe-inline'"})

    return app


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` and for each worker of ``mushra-web serve --workers N``."""
    return create_app(Settings.from_env())
