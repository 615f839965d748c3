"""What the routers share: settings, the app's wiring, the request's database session and the common look-ups.

Look-ups that touch the database are plain functions that a handler calls in its own thread, not FastAPI
dependencies: FastAPI runs each sync dependency in a thread-pool task of its own, and a write lock taken there
would be held while the handler waits for a free thread (see ``releases_session``).
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Iterator, Optional

from fastapi import HTTPException, Request
from fastapi import Path as UrlPath
from pydantic import BaseModel, ConfigDict
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from mushra_web.db import Experiment
from mushra_web.schema import TestConfig

STATIC = Path(__file__).parent / "static"
# A trial position in a URL: bounded to what the database's integer column holds, so no value can overflow it.
Position = Annotated[int, UrlPath(ge=0, le=2**31 - 1)]


class StrictPayload(BaseModel):
    """A request body: no unknown fields, and a JSON number is the only thing a number field takes (no ``true`` for
    1, no ``"42"`` for 42)."""

    model_config = ConfigDict(extra="forbid", strict=True)


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


@dataclass(frozen=True)
class Wiring:
    """One app instance's settings, session factory, URL-signing key and resolved stimulus folder."""

    settings: Settings
    sessions: sessionmaker
    url_key: bytes
    data_dir: Path


async def wiring(request: Request) -> Wiring:
    """Dependency: the wiring of the app serving this request (async: no thread-pool hop for a plain read)."""
    return request.app.state.wiring


def db(request: Request) -> Iterator[Session]:
    """Dependency: the request's database session; handlers close it themselves (``releases_session``)."""
    with request.app.state.wiring.sessions() as session:
        yield session


def releases_session(handler):
    """Close the request's session when the handler returns or raises, inside the handler's own thread.

    FastAPI would close it later, in another thread-pool task: until then a SQLite write lock (or a pooled
    connection) would be held by a request that needs a free thread to let go of it.
    """
    @functools.wraps(handler)
    def run(*args, **kwargs):
        try:
            return handler(*args, **kwargs)
        finally:
            kwargs["session"].close()

    return run


@functools.lru_cache(maxsize=64)
def config(config_json: str) -> TestConfig:
    """Configs are immutable once stored, so parsing is memoised on their text."""
    return TestConfig.model_validate(json.loads(config_json))


def experiment(session: Session, slug: str) -> Experiment:
    exp = session.scalar(select(Experiment).where(Experiment.slug == slug))
    if exp is None:
        raise HTTPException(404, "no such test")
    return exp
