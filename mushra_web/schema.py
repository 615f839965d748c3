"""The listening-test configuration (YAML), validated before a test can open, and its canonical hash."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mushra_web.text import INSTRUCTIONS_CHARS, TITLE_CHARS, check_text

SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@+=-]{0,127}$")
ANCHORS = {"lp3500": 3500.0, "lp7000": 7000.0}
# The query parameters each crowd platform adds to the test link: the worker's id, the study's, and the id of this
# worker's session (one attempt at the study; a worker who returns the study and takes it again gets a new one).
CROWD_ID_PARAMS = {"prolific": "PROLIFIC_PID", "mturk": "workerId", "generic": "pid", "none": None}
CROWD_STUDY_PARAMS = {"prolific": "STUDY_ID", "mturk": "hitId"}
CROWD_SESSION_PARAMS = {"prolific": "SESSION_ID", "mturk": "assignmentId"}
# What a config's ``protocol`` sets unless the config sets it itself. The EnCodec paper (Defossez et al. 2022)
# screens assessors by its own rule, and asks for at least one rating of 100 per trial.
PROTOCOLS: dict[str, dict] = {
    "bs1534_3": {},
    "encodec_2022": {"design": {"require_one_at_100": True}, "post_screening": ["encodec_2022"]},
}


class ConfigError(ValueError):
    """A test configuration that cannot be used; the message names the field and the problem."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ItemConfig(_Strict):
    """One item: its reference file and one decoded file per condition."""

    id: str
    reference: str
    conditions: dict[str, str]

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not NAME.match(v):
            raise ValueError(f"item id {v!r} must be 1-128 characters of letters, digits and _.:@+=-")
        return v


class DesignConfig(_Strict):
    """How each participant's plan is drawn and what a trial demands."""

    items_per_participant: Optional[int] = Field(default=None, ge=1)
    training_items: list[str] = Field(default_factory=list)
    require_play_all: bool = True
    require_rate_all: bool = True
    # BS.1534-3 practice: the hidden reference should get 100, so a trial goes on only when some sound is at 100
    require_one_at_100: bool = False
    # a trial can be submitted only this many stimulus lengths after the server sent its first sound (0: any time);
    # one pass through the excerpt is the least in which every sound, playing in step, can have been heard
    min_trial_lengths: float = Field(default=1.0, ge=0.0, le=20.0)
    crossfade_ms: float = Field(default=5.0, ge=1.0, le=50.0)
    min_loop_s: float = Field(default=0.5, ge=0.1, le=10.0)
    max_conditions: int = Field(default=12, ge=1, le=20)
    max_item_seconds: float = Field(default=20.0, gt=0, le=120.0)


class CrowdConfig(_Strict):
    """Crowd-sourcing hand-off: which URL parameter carries the worker id and where to send them at the end."""

    platform: Literal["prolific", "mturk", "generic", "none"] = "none"
    id_param: Optional[str] = None
    complete_url: Optional[str] = None
    # A participant id in use in one browser starts in another only after this many minutes without a save or
    # submit in the first (None: only when an admin allows it), so that knowing someone's id is not enough.
    takeover_idle_minutes: Optional[float] = Field(default=30.0, gt=0, le=7 * 24 * 60)

    @field_validator("complete_url")
    @classmethod
    def _url(cls, v: Optional[str]) -> Optional[str]:
        if v is not None:
            if not re.match(r"^https?://[^\s]+$", v):
                raise ValueError(f"complete_url {v!r} must be an http(s) URL")
            if "{code}" not in v:
                raise ValueError("complete_url must contain the placeholder {code} for the completion code")
        return v

    @property
    def url_param(self) -> Optional[str]:
        """The query parameter that holds the participant's external id."""
        return self.id_param or CROWD_ID_PARAMS[self.platform]

    @property
    def session_param(self) -> Optional[str]:
        """The query parameter that holds the platform's id of this worker's session, if the platform has one."""
        return CROWD_SESSION_PARAMS.get(self.platform)

    @property
    def study_param(self) -> Optional[str]:
        return CROWD_STUDY_PARAMS.get(self.platform)


class TestConfig(_Strict):
    """A whole MUSHRA test: items x conditions, hidden reference and anchors, design, crowd and screening."""

    id: str
    protocol: Optional[Literal["bs1534_3", "encodec_2022"]] = None
    title: str = "Listening test"
    instructions: str = (
        "You will hear a reference and several versions of the same recording, each behind a numbered button. Rate "
        "the basic audio quality of each numbered sound against the reference on the scale from 0 to 100, whose "
        "five bands are Excellent (80-100), Good (60-80), Fair (40-60), Poor (20-40) and Bad (0-20). One of the "
        "numbered sounds is the reference itself, hidden among the others: when you find it, rate it 100. Listen to "
        "every sound, switch between them as often as you like (they play in step), and drag across the waveform "
        "to loop a short passage.")
    sample_rate: int = Field(default=48000, ge=8000, le=192000)
    resample: bool = False  # resample files whose rate differs from sample_rate (soxr HQ) instead of refusing them
    fit_lengths: bool = False  # crop or zero-pad conditions to the reference length (decoders pad their output)
    excerpt_seconds: Optional[float] = Field(default=None, gt=0, le=120.0)  # keep only the first N seconds
    conditions: list[str]
    anchors: list[Literal["lp3500", "lp7000"]] = Field(default_factory=lambda: ["lp3500", "lp7000"])
    hidden_reference: bool = True
    items: list[ItemConfig]
    design: DesignConfig = Field(default_factory=DesignConfig)
    crowd: CrowdConfig = Field(default_factory=CrowdConfig)
    post_screening: list[Literal["bs1534_3", "encodec_2022"]] = Field(
        default_factory=lambda: ["bs1534_3", "encodec_2022"])
    # new participants one client address (IPv4, or an IPv6 /64) may add per hour; 0: no limit. A lab whose
    # listeners share one network address may need more.
    joins_per_address_per_hour: int = Field(default=30, ge=0, le=1_000_000)

    @model_validator(mode="before")
    @classmethod
    def _protocol_defaults(cls, data: object) -> object:
        """Fill in the protocol's settings under the config's own (a stored config has them all already)."""
        if not isinstance(data, dict) or data.get("protocol") not in PROTOCOLS:
            return data
        merged = dict(data)
        for key, value in PROTOCOLS[data["protocol"]].items():
            if isinstance(value, dict) and isinstance(merged.get(key, {}), dict):
                merged[key] = {**value, **merged.get(key, {})}
            else:
                merged.setdefault(key, value)
        return merged

    @field_validator("id")
    @classmethod
    def _slug(cls, v: str) -> str:
        if not SLUG.match(v):
            raise ValueError(f"test id {v!r} must be a slug: lower-case letters, digits, _ and -, at most 63")
        return v

    @field_validator("conditions")
    @classmethod
    def _conditions(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("at least one condition is needed")
        for name in v:
            if not NAME.match(name):
                raise ValueError(f"condition name {name!r} must be 1-128 characters of letters, digits and _.:@+=-")
            if name in ("reference", *ANCHORS):
                raise ValueError(f"condition name {name!r} is reserved")
        if len(set(v)) != len(v):
            raise ValueError(f"condition names repeat: {v}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> "TestConfig":
        n_buttons = len(self.conditions)
        if n_buttons > self.design.max_conditions:
            raise ValueError(f"{n_buttons} conditions under test exceed design.max_conditions="
                             f"{self.design.max_conditions} (BS.1534-3 advises at most 12)")
        if not self.items:
            raise ValueError("items: at least one item is needed")
        ids = [item.id for item in self.items]
        if len(set(ids)) != len(ids):
            raise ValueError(f"items: item ids repeat: {sorted(i for i in set(ids) if ids.count(i) > 1)}")
        for item in self.items:
            missing = [c for c in self.conditions if c not in item.conditions]
            extra = [c for c in item.conditions if c not in self.conditions]
            if missing or extra:
                raise ValueError(f"items[{item.id}]: conditions must be exactly {self.conditions}; "
                                 f"missing {missing}, unknown {extra}")
        unknown = [t for t in self.design.training_items if t not in ids]
        if unknown:
            raise ValueError(f"design.training_items names unknown items {unknown}")
        n_test = len(ids) - len(set(self.design.training_items))
        if n_test < 1:
            raise ValueError("every item is a training item: no item is left to rate")
        per = self.design.items_per_participant
        if per is not None and per > n_test:
            raise ValueError(f"design.items_per_participant={per} exceeds the {n_test} test items")
        if self.crowd.platform != "none" and self.crowd.url_param is None:
            raise ValueError("crowd.id_param is needed for this platform")
        return self

    @property
    def items_by_id(self) -> dict[str, ItemConfig]:
        return {item.id: item for item in self.items}

    def canonical_json(self) -> str:
        """The config as sorted JSON: what is stored and hashed."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))

    def sha256(self) -> str:
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()


def _format_error(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "(top level)"
        lines.append(f"{source}: {where}: {e['msg']}")
    return "\n".join(lines)


def _check_new(cfg: TestConfig, source: str) -> None:
    """What a new test must satisfy on top of the model, which also reads configs stored by earlier versions."""
    try:
        check_text(cfg.title, "title", TITLE_CHARS)
        check_text(cfg.instructions, "instructions", INSTRUCTIONS_CHARS, newlines=True)
    except ValueError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    if cfg.design.require_one_at_100 and not cfg.hidden_reference:
        via = f" (protocol {cfg.protocol} turns it on)" if cfg.protocol else ""
        raise ConfigError(f"{source}: design.require_one_at_100{via} asks listeners to rate the hidden reference "
                          "100, but hidden_reference is false: they would have to rate a codec or an anchor 100. "
                          "Set hidden_reference: true, or design.require_one_at_100: false")


def parse_config(data: object, source: str = "config", base_dir: Optional[Path] = None) -> TestConfig:
    """Validate a new test's config mapping; relative audio paths are resolved against ``base_dir``."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        cfg = TestConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_error(err, source)) from None
    _check_new(cfg, source)
    if base_dir is None:
        return cfg
    items = []
    for item in cfg.items:
        items.append(item.model_copy(update={
            "reference": str((base_dir / item.reference).resolve()),
            "conditions": {k: str((base_dir / v).resolve()) for k, v in item.conditions.items()},
        }))
    return cfg.model_copy(update={"items": items})


def load_config(path: "str | Path") -> TestConfig:
    """Read and validate a YAML test config."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    return parse_config(data, source=str(path), base_dir=path.parent)
