"""The database: every bit of state lives here, so any number of worker processes can serve one test.

SQLite (WAL, one writer at a time) by default; PostgreSQL through a ``postgresql+psycopg://`` URL for hosting.
A database made by an earlier version is brought up to date at start: missing tables, columns and indexes are added
(``init_db``); nothing is ever dropped.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Optional

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    inspect,
    text,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.schema import CreateColumn, CreateTable

from mushra_web.text import ID_CHARS, TITLE_CHARS, USERNAME_CHARS

DEFAULT_URL = "sqlite:///mushra.db"
# Request threads per worker process. Each pool holds more connections than there are threads, so a request that
# waits for a connection can never starve the requests holding them of a thread to finish on.
REQUEST_THREADS = 24


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class Meta(Base):
    """Server-wide settings shared by all workers (e.g. the URL-signing secret)."""

    __tablename__ = "meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class AdminUser(Base):
    __tablename__ = "admin_user"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(USERNAME_CHARS), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class AdminSession(Base):
    __tablename__ = "admin_session"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("admin_user.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime)


class LoginFailure(Base):
    """Failed admin logins by user name and client address, to slow down password guessing (across all workers).

    (Named admin_login_failure: the earlier login_failure table had no address and is no longer read.)
    """

    __tablename__ = "admin_login_failure"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(USERNAME_CHARS), index=True)
    address: Mapped[str] = mapped_column(String(64), index=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)


class AdminKnownAddress(Base):
    """An address (IPv4, or an IPv6 /64) an admin logged in from: the admin's own history, which an attacker's failed
    logins on the account never slow down."""

    __tablename__ = "admin_known_address"
    user_id: Mapped[int] = mapped_column(ForeignKey("admin_user.id", ondelete="CASCADE"), primary_key=True)
    address: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_ok_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class JoinRecord(Base):
    """A new participant and the address it came from, to limit how many one address can add to a test."""

    __tablename__ = "join_record"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiment.id", ondelete="CASCADE"))
    address: Mapped[str] = mapped_column(String(64))
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)
    __table_args__ = (Index("ix_join_record_experiment_address", "experiment_id", "address", "at"),)


class Experiment(Base):
    __tablename__ = "experiment"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(63), unique=True)
    title: Mapped[str] = mapped_column(String(TITLE_CHARS))
    config_json: Mapped[str] = mapped_column(Text)
    config_sha256: Mapped[str] = mapped_column(String(64))
    app_version: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default="open")  # open | closed
    sample_rate: Mapped[int] = mapped_column(Integer)
    channels: Mapped[int] = mapped_column(Integer)
    source_run: Mapped[Optional[str]] = mapped_column(Text, nullable=True)
    objective_rows_csv: Mapped[Optional[str]] = mapped_column(Text, nullable=True)
    ingest_report: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Stimulus(Base):
    """One playable file: a reference, a condition's decoding, or a generated anchor."""

    __tablename__ = "stimulus"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiment.id", ondelete="CASCADE"), index=True)
    item_id: Mapped[str] = mapped_column(String(128))
    condition: Mapped[str] = mapped_column(String(128))  # "reference", an anchor name, or a condition name
    kind: Mapped[str] = mapped_column(String(16))  # reference | anchor | condition
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    n_frames: Mapped[int] = mapped_column(Integer)
    __table_args__ = (UniqueConstraint("experiment_id", "item_id", "condition"),)


class ItemUse(Base):
    """The balance that allocation keeps: per test item, how many participants have rated it (``uses``), and how
    many were given it at all (``allocated``, which only breaks ties). Counting raters, not joins, keeps joins that
    never rate (a flood of them, or people who leave at once) from pushing items out of the rotation."""

    __tablename__ = "item_use"
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiment.id", ondelete="CASCADE"), primary_key=True)
    item_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    uses: Mapped[int] = mapped_column(Integer, default=0)
    allocated: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class Participant(Base):
    """One person taking one test. A crowd worker is one participant per (worker id, platform session id): see
    ``crowd`` for what each id is trusted with."""

    __tablename__ = "participant"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiment.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    external_id: Mapped[Optional[str]] = mapped_column(String(ID_CHARS), nullable=True)
    study_id: Mapped[Optional[str]] = mapped_column(String(ID_CHARS), nullable=True)
    crowd_session_id: Mapped[Optional[str]] = mapped_column(String(ID_CHARS), nullable=True)
    # hash of (worker id, platform session id): unique per test, so one crowd session is one participant
    crowd_key: Mapped[Optional[str]] = mapped_column(String(64), nullable=True)
    # hash of the random key the participant's browser keeps: a join whose answer was lost is known by it
    client_key_hash: Mapped[Optional[str]] = mapped_column(String(64), nullable=True)
    seed: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="active")  # active | completed
    completion_code: Mapped[Optional[str]] = mapped_column(String(32), nullable=True)
    user_agent: Mapped[Optional[str]] = mapped_column(String(400), nullable=True)
    audio_env: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime, nullable=True)
    __table_args__ = (Index("ix_participant_crowd_key", "experiment_id", "crowd_key", unique=True),
                      Index("ix_participant_client_key", "experiment_id", "client_key_hash"),
                      Index("ix_participant_external_id", "experiment_id", "external_id"))


class TakeoverGrant(Base):
    """An admin's consent that the next browser joining with this participant's crowd id takes the session over."""

    __tablename__ = "takeover_grant"
    participant_id: Mapped[int] = mapped_column(ForeignKey("participant.id", ondelete="CASCADE"), primary_key=True)
    granted_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Trial(Base):
    """One item of a participant's plan. Saves are ordered by ``version`` (the server's count of stored saves) and by
    the saving page's own ``save_seq``; the server's record of the sounds it sent starts the trial's clock."""

    __tablename__ = "trial"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participant.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    item_id: Mapped[str] = mapped_column(String(128))
    is_training: Mapped[bool] = mapped_column(Boolean, default=False)
    reference_stimulus_id: Mapped[int] = mapped_column(ForeignKey("stimulus.id"))
    status: Mapped[str] = mapped_column(String(16), default="open")  # open | submitted
    n_switches: Mapped[int] = mapped_column(Integer, default=0)
    loop: Mapped[dict] = mapped_column(JSON, default=dict)
    reference_plays: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime, nullable=True)
    submitted_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime, nullable=True)
    version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    saved_by: Mapped[Optional[str]] = mapped_column(String(32), nullable=True)  # the page (tab) of the last save
    save_seq: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # that page's sequence number
    save_digest: Mapped[Optional[str]] = mapped_column(String(64), nullable=True)  # what that save stored
    reference_served: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    audio_first_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime, nullable=True)
    __table_args__ = (UniqueConstraint("participant_id", "position"),)


class Rating(Base):
    """One slider of one trial; the row exists from the plan on, so saves only ever update it."""

    __tablename__ = "rating"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("trial.id", ondelete="CASCADE"), index=True)
    button_index: Mapped[int] = mapped_column(Integer)
    stimulus_id: Mapped[int] = mapped_column(ForeignKey("stimulus.id"))
    score: Mapped[Optional[float]] = mapped_column(Float, nullable=True)
    plays: Mapped[int] = mapped_column(Integer, default=0)
    listen_ms: Mapped[int] = mapped_column(Integer, default=0)
    n_moves: Mapped[int] = mapped_column(Integer, default=0)
    save_seq: Mapped[int] = mapped_column(Integer, default=0)  # the trial's version when this rating was last saved
    served: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # times the server sent its sound
    updated_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime, nullable=True)
    __table_args__ = (UniqueConstraint("trial_id", "button_index"),)


def database_url(url: Optional[str] = None) -> str:
    """The URL given, else $MUSHRA_DATABASE_URL, else a SQLite file in the working directory."""
    url = url or os.environ.get("MUSHRA_DATABASE_URL") or DEFAULT_URL
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def make_engine(url: Optional[str] = None) -> Engine:
    """An engine; SQLite gets WAL, a busy timeout, and BEGIN IMMEDIATE for transactions marked by ``begin_write``."""
    url = database_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False},
                               pool_size=5, max_overflow=REQUEST_THREADS)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):
            dbapi_conn.isolation_level = None  # let SQLAlchemy's begin event issue BEGIN itself
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):
            immediate = conn.get_execution_options().get("sqlite_immediate", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=8, max_overflow=REQUEST_THREADS - 4)


def begin_write(session: Session) -> None:
    """Open the session's transaction as a writer, before its first read.

    On SQLite this takes the write lock up front (BEGIN IMMEDIATE), so a read followed by a write cannot fail on a
    lock upgrade; reads elsewhere stay deferred and never block writers (WAL). Elsewhere it only begins.
    Call it inside the request handler, which then commits: a lock never outlives the handler's thread.
    """
    session.connection(execution_options={"sqlite_immediate": True})


def init_db(engine: Engine) -> None:
    """Create missing tables, and bring tables made by earlier versions up to date (idempotent): columns and indexes
    they lack are added (every added column is nullable or has a server default, so old rows stay valid), and the
    old one-participant-per-worker-id constraint is lifted (a worker is now one participant per crowd session)."""
    Base.metadata.create_all(engine)
    with engine.connect() as conn:
        stale_unique = [u for u in inspect(conn).get_unique_constraints(Participant.__tablename__)
                        if sorted(u["column_names"]) == ["experiment_id", "external_id"]]
    for constraint in stale_unique:
        if engine.dialect.name == "sqlite":
            _rebuild_sqlite_table(engine, Participant.__table__)
        else:
            with engine.begin() as conn:
                conn.execute(text(f'ALTER TABLE participant DROP CONSTRAINT "{constraint["name"]}"'))
    with engine.begin() as conn:
        existing = inspect(conn)
        for table in Base.metadata.sorted_tables:
            have = {c["name"] for c in existing.get_columns(table.name)}
            for column in table.columns:
                if column.name not in have:
                    ddl = CreateColumn(column).compile(dialect=conn.dialect)
                    conn.execute(text(f"ALTER TABLE {table.name} ADD COLUMN {ddl}"))
            for index in table.indexes:
                index.create(conn, checkfirst=True)


def _rebuild_sqlite_table(engine: Engine, table) -> None:
    """Make ``table`` again as the model defines it, keeping its rows: SQLite cannot drop a constraint, so this is
    its documented procedure (new table, copy, drop, rename) with foreign keys off, so that dropping the old table
    deletes nothing that refers to it. Indexes are added afterwards by ``init_db``."""
    meta = MetaData()  # the tables it refers to, so that its foreign keys resolve
    for other in Base.metadata.sorted_tables:
        if other is not table:
            other.to_metadata(meta)
    rebuilt = table.to_metadata(meta, name=f"{table.name}_rebuilt")
    raw = engine.raw_connection()
    cur = raw.cursor()
    try:
        old = [row[1] for row in cur.execute(f"PRAGMA table_info({table.name})")]
        keep = ", ".join(c.name for c in table.columns if c.name in old)
        cur.execute("PRAGMA foreign_keys=OFF")
        cur.execute("BEGIN IMMEDIATE")
        cur.execute(str(CreateTable(rebuilt).compile(dialect=engine.dialect)))
        cur.execute(f"INSERT INTO {rebuilt.name} ({keep}) SELECT {keep} FROM {table.name}")
        cur.execute(f"DROP TABLE {table.name}")
        cur.execute(f"ALTER TABLE {rebuilt.name} RENAME TO {table.name}")
        cur.execute("COMMIT")
    except BaseException:
        if raw.driver_connection.in_transaction:
            cur.execute("ROLLBACK")
        raise
    finally:
        cur.execute("PRAGMA foreign_keys=ON")
        raw.close()


def session_factory(engine: Engine) -> sessionmaker:
    return sessionmaker(engine, expire_on_commit=False)
