"""Text from outside (join parameters, log-in names, config titles), checked once at the edge against what every
database can hold: the same lengths as the columns, no NUL or other control characters, no lone surrogates.

PostgreSQL refuses a NUL and a string over its column's length; neither database can encode a lone surrogate
(``"\\ud800"`` in JSON) as UTF-8. Checked here, such text gets a 422 that names the field, on SQLite as on
PostgreSQL, instead of a 500 from the database.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated

from pydantic import AfterValidator

ID_CHARS = 128  # crowd ids (worker, study, session) and their column
PARAM_NAME_CHARS = 64
TITLE_CHARS = 200
INSTRUCTIONS_CHARS = 20_000
USERNAME_CHARS = 64
_SURROGATE = re.compile("[\ud800-\udfff]")


def check_text(value: str, what: str, max_chars: int, *, newlines: bool = False) -> str:
    """``value`` unchanged if a database can store it as ``what``; otherwise a ValueError naming the problem.

    Control characters (Unicode category Cc: NUL, carriage return, escape, ...) are refused, except line breaks
    where ``newlines`` allows them; a message never repeats the value, which may not even be printable.
    """
    if len(value) > max_chars:
        raise ValueError(f"{what} has {len(value)} characters; at most {max_chars} are allowed")
    if _SURROGATE.search(value):
        raise ValueError(f"{what} is not valid Unicode text (it holds a lone surrogate)")
    allowed = "\n" if newlines else ""
    bad = sorted({f"U+{ord(c):04X}" for c in value if unicodedata.category(c) == "Cc" and c not in allowed})
    if bad:
        raise ValueError(f"{what} holds control characters ({', '.join(bad)})")
    return value


def check_params(params: dict[str, str]) -> dict[str, str]:
    """The test link's query parameters as the page sends them: names of at most 64 characters, values of at most
    ID_CHARS (the crowd-id columns), neither with control characters or lone surrogates. Checked as a whole, so
    that an error's location never holds a name that cannot be written back as JSON."""
    for name, value in params.items():
        check_text(name, "a parameter name", PARAM_NAME_CHARS)
        check_text(value, f"parameter {name}", ID_CHARS)
    return params


def _username(value: str) -> str:
    return check_text(value, "the user name", USERNAME_CHARS)


def _password(value: str) -> str:
    """Passwords may hold any printable text, but they are hashed as UTF-8: a lone surrogate cannot be."""
    if _SURROGATE.search(value):
        raise ValueError("the password is not valid Unicode text (it holds a lone surrogate)")
    return value


UsernameText = Annotated[str, AfterValidator(_username)]
PasswordText = Annotated[str, AfterValidator(_password)]
