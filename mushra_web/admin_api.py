"""The admin API under /admin/api: log in and out, progress, open/close, participants, exports and the report.

Every route but the login needs an admin session cookie, and every write the session's CSRF token in a header.
"""

from __future__ import annotations

import datetime as dt
import math
import secrets
from dataclasses import dataclass
from typing import NoReturn, Optional

import anyio
from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import Field
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from mushra_web import auth, passwords, throttle
from mushra_web.db import (
    AdminSession,
    AdminUser,
    Experiment,
    ItemUse,
    Participant,
    Rating,
    TakeoverGrant,
    Trial,
    begin_write,
)
from mushra_web.text import PasswordText, UsernameText
from mushra_web.web import StrictPayload, Wiring, db, experiment, releases_session, wiring

ADMIN_COOKIE = "mushra_admin"
REFUSAL_PAUSE_S = 1.0

router = APIRouter(prefix="/admin/api")


class LoginBody(StrictPayload):
    username: UsernameText = Field(min_length=1)
    password: PasswordText = Field(min_length=1, max_length=256)


class StatusBody(StrictPayload):
    status: str = Field(pattern="^(open|closed)$")


def admin(request: Request, session: Session = Depends(db)) -> AdminSession:
    """Dependency: the admin session of this request (401 without one; 403 for a write without its CSRF token)."""
    row = auth.find_admin_session(session, request.cookies.get(ADMIN_COOKIE))
    if row is None:
        raise HTTPException(401, "log in first")
    if request.method not in ("GET", "HEAD"):
        sent = request.headers.get("x-csrf-token", "")
        if not secrets.compare_digest(sent, row.csrf_token):
            raise HTTPException(403, "missing or wrong CSRF token")
    session.commit()  # end the read here: the handler opens its own (write) transaction in its thread
    return row


def participant(session: Session, slug: str, public_id: str) -> tuple[Experiment, Participant]:
    """The test and one of its participants, in a write transaction (the callers change them)."""
    begin_write(session)
    exp = experiment(session, slug)
    p = session.scalar(select(Participant).where(Participant.experiment_id == exp.id,
                                                 Participant.public_id == public_id))
    if p is None:
        raise HTTPException(404, "no such participant")
    return exp, p


@dataclass(frozen=True)
class _Attempt:
    """What a log-in attempt is, read before its password is checked: whose hash, trusted or not, how long to wait."""

    user_id: Optional[int]
    password_hash: Optional[str]
    trusted: bool
    wait: dt.timedelta


def _read_attempt(w: Wiring, username: str, address: str, cookie: Optional[str]) -> _Attempt:
    """One short read (no write lock on SQLite): the user, whether the attempt is the admin's own, and the wait."""
    with w.sessions() as session:
        user = session.scalar(select(AdminUser).where(AdminUser.username == username))
        trusted = False
        if user is not None:
            own_session = auth.find_admin_session(session, cookie)
            trusted = (own_session is not None and own_session.user_id == user.id) or throttle.is_known_address(
                session, user.id, address)
        wait = throttle.login_wait(session, username, address, trusted)
        return _Attempt(user.id if user else None, user.password_hash if user else None, trusted, wait)


def _record_attempt(w: Wiring, username: str, address: str, user_id: Optional[int],
                    new_hash: Optional[str]) -> Optional[tuple[str, str]]:
    """One short write: the failure counted, or the success remembered with a new admin session (its tokens) and
    the password's hash made again if its parameters were out of date."""
    with w.sessions() as session:
        begin_write(session)
        throttle.record_login(session, username, address, user_id)
        tokens = None
        if user_id is not None:
            user = session.get(AdminUser, user_id)
            if new_hash is not None:
                user.password_hash = new_hash
            tokens = auth.open_admin_session(session, user)
        session.commit()
        return tokens


async def _refuse(status: int, detail: str, seconds: int) -> NoReturn:
    """Answer a refused attempt after a pause that holds no thread or lock: a script gains nothing by hammering."""
    await anyio.sleep(REFUSAL_PAUSE_S)
    raise HTTPException(status, detail, headers={"Retry-After": str(seconds)})


@router.post("/login")
async def login(body: LoginBody, request: Request, response: Response, w: Wiring = Depends(wiring)) -> dict:
    """Check a password with no database transaction open: the wait is read first, the password is checked in a
    password lane (see ``passwords``), and the result is written in a transaction of its own."""
    address = throttle.address_key(request.client.host if request.client else "unknown")
    attempt = await anyio.to_thread.run_sync(_read_attempt, w, body.username, address,
                                             request.cookies.get(ADMIN_COOKIE))
    if attempt.wait:
        seconds = math.ceil(attempt.wait.total_seconds())
        await _refuse(429, f"too many failed logins; wait {seconds} s before trying again", seconds)
    try:
        ok, new_hash = await passwords.check_password(attempt.password_hash, body.password, attempt.trusted)
    except passwords.HashingBusy:
        await _refuse(503, "the server is busy checking other logins; try again in a few seconds", 5)
    tokens = await anyio.to_thread.run_sync(_record_attempt, w, body.username, address,
                                            attempt.user_id if ok else None, new_hash)
    if tokens is None:
        raise HTTPException(401, "wrong user name or password")
    token, csrf = tokens
    response.set_cookie(ADMIN_COOKIE, token, max_age=auth.ADMIN_SESSION_HOURS * 3600, path="/admin",
                        httponly=True, samesite="strict", secure=w.settings.secure_cookies)
    return {"username": body.username, "csrf": csrf}


@router.get("/me")
@releases_session
def me(row: AdminSession = Depends(admin), session: Session = Depends(db)) -> dict:
    return {"username": session.get(AdminUser, row.user_id).username, "csrf": row.csrf_token}


@router.post("/logout")
@releases_session
def logout(response: Response, row: AdminSession = Depends(admin), session: Session = Depends(db)) -> dict:
    begin_write(session)
    session.delete(session.merge(row))
    session.commit()
    response.delete_cookie(ADMIN_COOKIE, path="/admin")
    return {"ok": True}


@router.get("/experiments", dependencies=[Depends(admin)])
@releases_session
def experiments(session: Session = Depends(db)) -> list[dict]:
    from mushra_web.export import progress

    return [progress(session, exp) for exp in session.scalars(select(Experiment).order_by(Experiment.id))]


@router.post("/experiments/{slug}/status", dependencies=[Depends(admin)])
@releases_session
def set_status(slug: str, body: StatusBody, session: Session = Depends(db)) -> dict:
    begin_write(session)
    exp = experiment(session, slug)
    exp.status = body.status
    session.commit()
    return {"slug": slug, "status": exp.status}


@router.delete("/experiments/{slug}/participants/{public_id}", dependencies=[Depends(admin)])
@releases_session
def delete_participant(slug: str, public_id: str, session: Session = Depends(db)) -> dict:
    from mushra_web.plan import count_rater

    exp, p = participant(session, slug, public_id)
    trials = session.scalars(select(Trial).where(Trial.participant_id == p.id)).all()
    rated = set(session.scalars(select(Rating.trial_id).where(Rating.trial_id.in_([t.id for t in trials]),
                                                              Rating.score.is_not(None))))
    for trial in trials:
        if trial.id in rated:
            count_rater(session, exp.id, trial, -1)
        if not trial.is_training:
            session.execute(update(ItemUse).where(ItemUse.experiment_id == exp.id, ItemUse.item_id == trial.item_id,
                                                  ItemUse.allocated > 0).values(allocated=ItemUse.allocated - 1))
    trial_ids = select(Trial.id).where(Trial.participant_id == p.id).scalar_subquery()
    session.execute(delete(Rating).where(Rating.trial_id.in_(trial_ids)))
    session.execute(delete(Trial).where(Trial.participant_id == p.id))
    session.execute(delete(Participant).where(Participant.id == p.id))
    session.commit()
    return {"deleted": public_id}


@router.post("/experiments/{slug}/participants/{public_id}/takeover", dependencies=[Depends(admin)])
@releases_session
def allow_takeover(slug: str, public_id: str, session: Session = Depends(db)) -> dict:
    _, p = participant(session, slug, public_id)
    if session.get(TakeoverGrant, p.id) is None:
        session.add(TakeoverGrant(participant_id=p.id))
    session.commit()
    return {"participant_id": public_id, "takeover_allowed": True}


@router.get("/experiments/{slug}/export.{fmt}", dependencies=[Depends(admin)])
@releases_session
def export(slug: str, fmt: str, session: Session = Depends(db)) -> Response:
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


@router.get("/experiments/{slug}/report", response_class=HTMLResponse, dependencies=[Depends(admin)])
@releases_session
def report(slug: str, session: Session = Depends(db)) -> HTMLResponse:
    from mushra_web.export import export_rows
    from mushra_web.report import build_report, report_html

    exp = experiment(session, slug)
    rep = build_report(export_rows(session, exp), exp)
    return HTMLResponse(report_html(rep), headers={"Content-Security-Policy":
                                                   "default-src 'none'; img-src data:; style-src 'unsafe-inline'"})
