"""The static pages: a test's participant page (or a page saying there is no such test), the admin page and the
favicon."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse, HTMLResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from mushra_web.db import Experiment
from mushra_web.web import STATIC, db, releases_session

router = APIRouter()


@router.get("/e/{slug}", response_class=HTMLResponse)
@router.get("/e/{slug}/", response_class=HTMLResponse)
@releases_session
def participant_page(slug: str, session: Session = Depends(db)) -> FileResponse:
    if session.scalar(select(Experiment.id).where(Experiment.slug == slug)) is None:
        return FileResponse(STATIC / "unknown-test.html", status_code=404, media_type="text/html")
    return FileResponse(STATIC / "participant.html", media_type="text/html")


@router.get("/favicon.ico", include_in_schema=False)
def favicon() -> FileResponse:
    """Browsers ask for it on every page; without it every visit logs a 404."""
    return FileResponse(STATIC / "favicon.ico", media_type="image/x-icon")


@router.get("/admin", response_class=HTMLResponse)
def admin_page() -> FileResponse:
    return FileResponse(STATIC / "admin.html", media_type="text/html")
