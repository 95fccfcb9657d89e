"""The rules: several per scenario type, each type's list read from its key of the rules file.

The model's fields come from the registry: one list per scenario type, validated by that
scenario's rule model, so a new scenario package adds its ``[[type]]`` tables to the rules
file without a change here. Rules can be reloaded with SIGHUP; they never read the environment.
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

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

    if TYPE_CHECKING:  # the per-type lists come from the registry — e.g. ``rules.inactivity``

        def __init__(
            self,
            *,
            daily_cap: int = ...,
            global_holdout_percent: float = ...,
            global_holdout_salt: str = ...,
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


def load_rules(path: Path | None) -> Rules:
    """Read and validate a rules file; errors name the file and the key."""
    if path is None:
        return default_rules()
    try:
        data: dict[str, Any] = tomllib.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise ConfigError([(str(path), "file not found")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([(str(path), f"not valid TOML: {exc}")]) from None
    try:
        return Rules.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(
            [(f"{path}: {pydantic_loc(e['loc'])}" if e["loc"] else str(path), e["msg"]) for e in exc.errors()]
        ) from None
