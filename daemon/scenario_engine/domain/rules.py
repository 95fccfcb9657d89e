"""The rules: several per scenario type, each type's list read from its key of the rules file.

The model's fields come from the registry: one list per scenario type, validated by that
scenario's rule model, so a new scenario package adds its ``[[type]]`` tables to the rules
file without a change here. Rules can be reloaded with SIGHUP; they never read the environment.
"""

from __future__ import annotations

import os
import stat
import tomllib
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator

from scenario_engine.domain.rule import HoldoutSalt, RuleBase
from scenario_engine.errors import ConfigError, pydantic_loc
from scenario_engine.scenarios.registry import SCENARIOS

Rule = RuleBase


class _RulesCore(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    daily_cap: int = Field(default=3, ge=1, le=1000, description="Pushes per mentor per 24 h, all scenarios.")
    # A global holdout: mentors whom no rule nudges (docs/OUTCOMES.md).
    global_holdout_percent: float = Field(default=0.0, ge=0, le=100)
    global_holdout_salt: HoldoutSalt = "global"
    # Channels tried, in order, when a push cannot reach the mentor at all (no device token,
    # token unregistered); off by default (docs/CHANNELS.md).
    fallback: tuple[Literal["email"], ...] = Field(
        default=(), description='Fallback channels for an undeliverable push, e.g. ["email"].'
    )
    # The mentor's usual hour (rules with send_at = "usual_hour"; docs/CHANNELS.md): the most
    # frequent local hour of their last usual_hour_activities activities, if they have at least
    # usual_hour_min_history; else the programme's usual_hour. timing_percent of the mentors a
    # rule sends to get the held push, the rest the immediate one (salted hash, holdout.py).
    usual_hour: int = Field(default=18, ge=0, le=23)
    usual_hour_activities: int = Field(default=20, ge=1, le=1000)
    usual_hour_min_history: int = Field(default=5, ge=1, le=1000)
    timing_percent: float = Field(default=50.0, ge=0, le=100)
    timing_salt: HoldoutSalt = "timing"
    # Digests (docs/CHANNELS.md): pushes for one mentor due within digest_minutes go as one
    # message (0: off); digest_percent of the mentors get digests, the rest separate pushes.
    digest_minutes: int = Field(default=0, ge=0, le=1440)
    digest_percent: float = Field(default=50.0, ge=0, le=100)
    digest_salt: HoldoutSalt = "digest"

    if TYPE_CHECKING:  # the per-type lists come from the registry — e.g. ``rules.inactivity``

        def __init__(
            self,
            *,
            daily_cap: int = ...,
            global_holdout_percent: float = ...,
            global_holdout_salt: str = ...,
            fallback: Sequence[str] = ...,
            usual_hour: int = ...,
            usual_hour_activities: int = ...,
            usual_hour_min_history: int = ...,
            timing_percent: float = ...,
            timing_salt: str = ...,
            digest_minutes: int = ...,
            digest_percent: float = ...,
            digest_salt: str = ...,
            **per_type: Sequence[RuleBase],
        ) -> None: ...

        def __getattr__(self, name: str) -> list[Any]: ...


if TYPE_CHECKING:
    _PerType = _RulesCore
else:  # one list field per scenario type of the registry
    _PerType = create_model(
        "_PerType",
        __base__=_RulesCore,
        **{s.type: (list[s.rule_model], Field(default_factory=list)) for s in SCENARIOS},
    )


class Rules(_PerType):
    """The scenario rules. Several rules per scenario type; names are unique."""

    @model_validator(mode="after")
    def _unique_names(self) -> Rules:
        seen: set[str] = set()
        for rule in self.all():
            if rule.name in seen:
                raise ValueError(f"rule name {rule.name!r} is used twice")
            seen.add(rule.name)
        return self

    def of_type(self, scenario_type: str) -> list[RuleBase]:
        rules: list[RuleBase] = getattr(self, scenario_type)
        return rules

    def all(self) -> list[RuleBase]:
        """Every rule, in evaluation order (registry order, then file order)."""
        return [r for s in SCENARIOS for r in self.of_type(s.type)]

    def enabled(self) -> list[RuleBase]:
        return [r for r in self.all() if r.enabled]

    def by_name(self, name: str) -> RuleBase:
        for rule in self.all():
            if rule.name == name:
                return rule
        raise KeyError(name)


DEFAULT_RULES = "default_rules.toml"


def default_rules() -> Rules:
    """The rules used when no rules file is configured (domain/default_rules.toml)."""
    text = (resources.files("scenario_engine.domain") / DEFAULT_RULES).read_text("utf-8")
    return Rules.model_validate(tomllib.loads(text))


# A rules file is a few kilobytes; a bound keeps a mistaken path (a log file, a disk image)
# from being read into memory whole.
MAX_RULES_BYTES = 1 << 20


def read_rules_text(path: Path) -> str:
    """The file's text, or a ConfigError saying why it cannot be the rules file.

    Only a regular file (or a symlink to one: a Kubernetes ConfigMap mount) is read. The file is
    opened non-blocking and checked with fstat on the open descriptor, so a FIFO or a device at
    the path is refused without waiting for a writer and without a window between the check and
    the read. Every OS and decoding error becomes a problem naming the file: a bad file is the
    operator's configuration (check-config and ``run`` exit 2, a SIGHUP reload is rejected),
    never a crash."""
    where = str(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        dangling = os.path.islink(path)
        raise ConfigError([(where, "a dangling symlink" if dangling else "file not found")]) from None
    except PermissionError:
        raise ConfigError([(where, "permission denied: the engine's user cannot read it")]) from None
    except OSError as exc:  # e.g. ENXIO for a socket: say what is there if we can
        try:
            mode = os.stat(path).st_mode
        except OSError:
            mode = stat.S_IFREG
        if not stat.S_ISREG(mode):
            raise ConfigError([(where, f"not a regular file ({_file_kind(mode)})")]) from None
        raise ConfigError([(where, f"cannot open: {exc.strerror or exc}")]) from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise ConfigError([(where, f"not a regular file ({_file_kind(mode)})")])
        data = b""
        while len(data) <= MAX_RULES_BYTES:
            chunk = os.read(fd, MAX_RULES_BYTES + 1 - len(data))
            if not chunk:
                break
            data += chunk
    except OSError as exc:
        raise ConfigError([(where, f"cannot read: {exc.strerror or exc}")]) from None
    finally:
        os.close(fd)
    if len(data) > MAX_RULES_BYTES:
        raise ConfigError([(where, f"larger than {MAX_RULES_BYTES} bytes: not a rules file")])
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            [(where, f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})")]
        ) from None


def _file_kind(mode: int) -> str:
    kinds = (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    )
    return next((name for test, name in kinds if test(mode)), "not a file")


def load_rules(path: Path | None) -> Rules:
    """Read and validate a rules file; errors name the file and the key. Any file that cannot
    be read or parsed is a ConfigError (read_rules_text)."""
    if path is None:
        return default_rules()
    text = read_rules_text(path)
    try:
        data: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([(str(path), f"not valid TOML: {exc}")]) from None
    try:
        return Rules.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(
            [(f"{path}: {pydantic_loc(e['loc'])}" if e["loc"] else str(path), e["msg"]) for e in exc.errors()]
        ) from None
