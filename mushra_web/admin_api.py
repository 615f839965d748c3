"""The admin API under /admin/api: log in and out, progress, open/close, participants, exports and the report.

Every route but the login needs an admin session cookie, and every write the session's CSRF token in a header.
"""

from __future__ import annotations

import math
import secrets

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from mushra_web import auth
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
from mushra_web.web import Wiring, db, experiment, releases_session, wiring

ADMIN_COOKIE = "mushra_admin"

router = APIRouter(prefix="/admin/api")


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class LoginBody(_Payload):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class StatusBody(_Payload):
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


@router.post("/login")
@releases_session
def login(body: LoginBody, request: Request, response: Response, w: Wiring = Depends(wiring),
          session: Session = Depends(db)) -> dict:
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
                        httponly=True, samesite="strict", secure=w.settings.secure_cookies)
    return {"username": user.username, "csrf": csrf}


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
    exp, p = participant(session, slug, public_id)
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
