"""API token format: ``evh_<kind>_<43 characters of base64url>`` carrying 256 random bits.

The prefix makes a leaked token recognisable (secret scanners, our own log redaction pattern);
the kind says what it authenticates as (``at``: an agent, ``pt``: a person). Only the SHA-256
digest is stored; the token itself is shown once, when it is issued.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from enum import Enum


class TokenKind(Enum):
    AGENT = "at"
    PERSONAL = "pt"


RANDOM_BYTES = 32  # 256 bits
# token_urlsafe(32) is always 43 characters: base64url of 32 bytes without padding.
_TOKEN_RE = re.compile(r"^evh_(at|pt)_([A-Za-z0-9_-]{43})$")
DISPLAY_CHARS = 14  # "evh_at_" + 7 random characters


@dataclass(frozen=True)
class NewToken:
    plaintext: str  # shown once to whoever issued it, never stored
    digest: str
    display: str

    def __repr__(self) -> str:  # never show the token, even in a debugger or traceback
        return f"NewToken(display={self.display!r})"


def issue(kind: TokenKind) -> NewToken:
    plaintext = f"evh_{kind.value}_{secrets.token_urlsafe(RANDOM_BYTES)}"
    return NewToken(
        plaintext=plaintext, digest=digest(plaintext), display=plaintext[:DISPLAY_CHARS]
    )


def digest(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode("utf-8")).hexdigest()


def parse(candidate: str) -> TokenKind | None:
    """The kind of a well-formed token, or None: malformed input never reaches the database."""
    match = _TOKEN_RE.match(candidate)
    return TokenKind(match.group(1)) if match else None
