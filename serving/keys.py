"""API keys and what each may see: the keys of DEALCAST_API_KEYS and of a keys file.

A key in DEALCAST_API_KEYS sees every team. A keys file (DEALCAST_KEYS_FILE, TOML) holds
keys by their SHA-256 hash, never in clear, each with its scope:

    [[keys]]
    name = "crm-emea"                 # optional; a label for the operator, never a secret
    sha256 = "9f86d081884c7d65..."    # hex SHA-256 of the key (`printf %s KEY | sha256sum`)
    teams = ["EMEA 1", "EMEA 2"]      # the teams it may see, or "*" for every team

A presented key is hashed once and compared with every hash in constant time
(`hmac.compare_digest`), all of them every time, as the clear keys are.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from features.errors import DealcastError

MIN_KEY_LENGTH = 16
_HEX_SHA256 = re.compile(r"[0-9a-f]{64}")


class KeysFileInvalid(DealcastError):
    """The keys file cannot be used; the message names the entry and the problem."""


@dataclass(frozen=True)
class TeamScope:
    """The teams a caller may see: `teams` None means every team."""

    teams: frozenset[str] | None

    @classmethod
    def every_team(cls) -> TeamScope:
        return cls(None)

    @classmethod
    def of(cls, teams: Iterable[str]) -> TeamScope:
        return cls(frozenset(teams))

    @property
    def unlimited(self) -> bool:
        return self.teams is None

    def allows(self, team: str) -> bool:
        return self.teams is None or team in self.teams

    def union(self, other: TeamScope) -> TeamScope:
        if self.teams is None or other.teams is None:
            return TeamScope.every_team()
        return TeamScope(self.teams | other.teams)


@dataclass(frozen=True)
class HashedKey:
    """One key of the keys file: its SHA-256 (hex) and its scope."""

    sha256: str
    scope: TeamScope
    name: str = ""


def key_digest(key: str) -> str:
    """The hex SHA-256 of a key, as the keys file holds it."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def key_matches(candidate: str, keys: Sequence[SecretStr]) -> bool:
    """True when `candidate` equals one of `keys`; every key is compared, in constant time."""
    presented = candidate.encode("utf-8")
    found = False
    for key in keys:
        found |= hmac.compare_digest(presented, key.get_secret_value().encode("utf-8"))
    return found


def scope_of_key(
    candidate: str, *, clear_keys: Sequence[SecretStr], hashed_keys: Sequence[HashedKey]
) -> TeamScope | None:
    """What `candidate` may see (the union when it is listed twice), None for no valid key."""
    scope: TeamScope | None = TeamScope.every_team() if key_matches(candidate, clear_keys) else None
    digest = key_digest(candidate).encode("ascii")
    for entry in hashed_keys:
        if hmac.compare_digest(digest, entry.sha256.encode("ascii")):
            scope = entry.scope if scope is None else scope.union(entry.scope)
    return scope


def read_keys_file(path: Path) -> tuple[HashedKey, ...]:
    """The keys of a keys file, checked: every entry needs a SHA-256 and a scope."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise KeysFileInvalid(f"cannot read {path}: {error.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise KeysFileInvalid(f"{path} is not valid TOML: {error}") from None
    entries = document.get("keys")
    if not isinstance(entries, list) or not entries:
        raise KeysFileInvalid(f"{path} has no [[keys]] entries")
    keys: list[HashedKey] = []
    seen: set[str] = set()
    for number, entry in enumerate(entries, start=1):
        where = f"{path}, keys entry {number}"
        if not isinstance(entry, dict):
            raise KeysFileInvalid(f"{where}: not a table")
        unknown = sorted(set(entry) - {"name", "sha256", "teams"})
        if unknown:
            raise KeysFileInvalid(f"{where}: unknown fields {unknown} (name, sha256, teams)")
        digest = entry.get("sha256")
        if not isinstance(digest, str) or not _HEX_SHA256.fullmatch(digest.lower()):
            raise KeysFileInvalid(f"{where}: sha256 must be 64 hex digits, the key's SHA-256")
        if digest.lower() in seen:
            raise KeysFileInvalid(f"{where}: the same sha256 is listed twice")
        seen.add(digest.lower())
        name = entry.get("name", "")
        if not isinstance(name, str):
            raise KeysFileInvalid(f"{where}: name must be text")
        keys.append(HashedKey(digest.lower(), _scope(entry.get("teams"), where), name))
    return tuple(keys)


def _scope(teams: object, where: str) -> TeamScope:
    if teams == "*":
        return TeamScope.every_team()
    if (
        isinstance(teams, list)
        and teams
        and all(isinstance(team, str) and team.strip() for team in teams)
    ):
        return TeamScope.of(teams)
    raise KeysFileInvalid(f'{where}: teams must be "*" (every team) or a list of team ids')
