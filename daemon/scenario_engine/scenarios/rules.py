"""The rules: several per scenario type, each type's list read from its key of the rules file.

The model's fields come from the registry: one list per scenario type, validated by that
scenario's rule model, so a new scenario package adds its ``[[type]]`` tables to the rules
file without a change here. That is why ``Rules`` is built here, beside the registry, and not
in domain/ (which knows no scenario). Rules can be reloaded with SIGHUP; they never read the
environment. The default programme is domain/default_rules.toml.
"""

from __future__ import annotations

import os
import stat
import tomllib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from scenario_engine.domain.quiet_hours import parse_quiet_hours
from scenario_engine.domain.rule import HoldoutSalt, RuleBase
from scenario_engine.errors import ConfigError, pydantic_loc
from scenario_engine.messages import Chosen, MessageError, check_message, choose, display_names, locale
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
    # Quiet hours of the programme, "HH:MM-HH:MM" in the mentor's zone; None falls back to
    # SCENARIO_QUIET_HOURS (the environment), then to none (docs/PROGRAMMES.md).
    quiet_hours: str | None = Field(default=None, max_length=20)

    @field_validator("quiet_hours")
    @classmethod
    def _quiet_window(cls, value: str | None) -> str | None:
        if value is not None:
            parse_quiet_hours(value)
        return value

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
            quiet_hours: str | None = ...,
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


# Keys of the rules file that are not policy (not overridable per organisation).
_NOT_POLICY = frozenset({"organizations", "messages", "display_names", "default_locale"})
# What an organisation's table may hold besides the policy keys and its own rule lists.
_ORG_KEYS = frozenset({"name", "locale", "rules"})


def policy_keys() -> tuple[str, ...]:
    """The top-level keys an organisation may override: every field of the rules model that is
    neither a scenario type's rule list nor one of the programme's own tables. Generic on
    purpose: a new top-level policy key becomes overridable per organisation without code."""
    types = {s.type for s in SCENARIOS}
    return tuple(k for k in Rules.model_fields if k not in types and k not in _NOT_POLICY)


Locale = Annotated[str, Field(min_length=2, max_length=20, pattern=r"^[a-z]{2,3}(_[A-Za-z0-9]{2,8})*$")]


class MessageTexts(BaseModel):
    """One rule's title and body in one locale (``[messages.<locale>.<rule>]``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    title: str = Field(min_length=1, max_length=1000)
    body: str = Field(min_length=1, max_length=8000)


@dataclass(frozen=True)
class Variants:
    """One rule name across the programmes: the default programme's rule (None when the rule is
    an organisation's own) and each listed organisation's effective rule (None: that
    organisation does not have it). A mentor in an organisation not listed gets ``default``."""

    name: str
    default: RuleBase | None
    orgs: tuple[tuple[uuid.UUID, RuleBase | None], ...]
    by_org: dict[uuid.UUID, RuleBase | None] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_org", dict(self.orgs))

    @property
    def uniform(self) -> bool:
        """True when every organisation runs exactly the default's rule (today's case)."""
        return all(r == self.default for _, r in self.orgs)

    @property
    def default_runs(self) -> bool:
        return self.default is not None and self.default.enabled

    def for_org(self, org: uuid.UUID | None) -> RuleBase | None:
        """The effective rule for a mentor of ``org``, or None when it does not run there."""
        if org in self.by_org:
            rule = self.by_org[org]
            return rule if rule is not None and rule.enabled else None
        return self.default if self.default is not None and self.default.enabled else None

    def distinct(self) -> list[RuleBase]:
        """The distinct enabled rules (the default first): one candidate statement each."""
        out: list[RuleBase] = []
        for rule in [self.default, *(r for _, r in self.orgs)]:
            if rule is not None and rule.enabled and rule not in out:
                out.append(rule)
        return out


class Rules(_PerType):
    """The scenario rules. Several rules per scenario type; names are unique.

    The top level is the default programme; ``organizations`` holds the per-organisation
    overrides, validated here into one effective ``Rules`` per organisation (``organization``).
    """

    default_locale: Locale = "en"
    organizations: dict[str, dict[str, Any]] = Field(default_factory=dict)
    messages: dict[Locale, dict[str, MessageTexts]] = Field(default_factory=dict)
    # Display names of placeholder values per locale: [display_names.nb.certification_type].
    display_names: dict[Locale, dict[str, dict[str, str]]] = Field(default_factory=dict)
    # Filled by the validator: organisation id → (its name or None, effective programme).
    _orgs: dict[uuid.UUID, tuple[str | None, Rules]] = PrivateAttr(default_factory=dict)
    # Computed once per rules object (the evaluation asks per candidate).
    _variants: dict[str, Variants] = PrivateAttr(default_factory=dict)
    _names: list[str] | None = PrivateAttr(default=None)
    _anywhere: list[RuleBase] | None = PrivateAttr(default=None)
    _differing: frozenset[uuid.UUID] | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _unique_names(self) -> Rules:
        seen: set[str] = set()
        for rule in self.all():
            if rule.name in seen:
                raise ValueError(f"rule name {rule.name!r} is used twice")
            seen.add(rule.name)
        return self

    @model_validator(mode="after")
    def _programmes(self) -> Rules:
        """Each organisation's effective programme; every problem names its full key path."""
        problems: list[str] = []
        for key, table in self.organizations.items():
            where = f"organizations.{key}"
            try:
                org = uuid.UUID(key)
            except ValueError:
                problems.append(f"{where}: not an organisation id (a UUID)")
                continue
            if not isinstance(table, dict):
                problems.append(f"{where}: must be a table")
                continue
            effective = self._effective(where, table, problems)
            if effective is not None:
                name = table.get("name")
                self._orgs[org] = (name if isinstance(name, str) else None, effective)
        problems += self._message_problems()
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _message_problems(self) -> list[str]:
        problems: list[str] = []
        locales = {"default_locale": self.default_locale}
        locales |= {
            f"organizations.{k}.locale": v["locale"] for k, v in self.organizations.items() if "locale" in v
        }
        locales |= {f"messages.{loc}": loc for loc in self.messages}
        locales |= {f"display_names.{loc}": loc for loc in self.display_names}
        for where, loc in locales.items():
            try:
                locale(str(loc))
            except MessageError as exc:
                problems.append(f"{where}: {exc}")
        names = {r.name: r for r in self.all()}
        for _, effective in self._orgs.values():
            names |= {r.name: r for r in effective.all() if r.name not in names}
        for loc, texts in self.messages.items():
            for rule_name, msg in texts.items():
                rule = names.get(rule_name)
                if rule is None:
                    problems.append(f"messages.{loc}.{rule_name}: no rule of that name")
                    continue
                for part in ("title", "body"):
                    try:
                        check_message(getattr(msg, part), rule.CONTEXT_KEYS)
                    except MessageError as exc:
                        problems.append(f"messages.{loc}.{rule_name}.{part}: {exc}")
        return problems

    def locale_chain(self, org: uuid.UUID | None, mentor_locale: str | None) -> list[str]:
        """Mentor → organisation → ``default_locale``: the locales a text is looked for in."""
        return [x for x in (mentor_locale, self.organization(org).default_locale, self.default_locale) if x]

    def message(
        self, rule: RuleBase, org: uuid.UUID | None, mentor_locale: str | None
    ) -> tuple[Chosen, dict[str, dict[str, str]]]:
        """The chosen text (messages.Chosen) of ``rule`` for a mentor, and the display names of
        its locale. A rule's own title/body (set in the file) is the ``default_locale`` text."""
        defaults = type(rule).model_fields
        own = (rule.title, rule.body)
        explicit = own != (defaults["title"].default, defaults["body"].default)
        chain = self.locale_chain(org, mentor_locale)
        chosen = choose(
            rule.name,
            rule.scenario_type,
            own if explicit else None,
            chain,
            self.default_locale,
            self.messages,
        ) or Chosen(rule.title, rule.body, self.default_locale, "rule", legacy=True)
        return chosen, display_names(chosen.locale, self.display_names)

    def _effective(self, where: str, table: dict[str, Any], problems: list[str]) -> Rules | None:
        types = {s.type: s for s in SCENARIOS}
        policy = set(policy_keys())
        for key in table:
            if key not in policy and key not in _ORG_KEYS and key not in types:
                problems.append(f"{where}.{key}: not a key an organisation may set")
        name = table.get("name")
        if name is not None and (not isinstance(name, str) or not 0 < len(name) <= 200):
            problems.append(f"{where}.name: must be a text of 1 to 200 characters")
        data: dict[str, Any] = {k: getattr(self, k) for k in policy}
        data.update({k: v for k, v in table.items() if k in policy})
        data["default_locale"] = table.get("locale", self.default_locale)
        overrides = table.get("rules", {})
        if not isinstance(overrides, dict):
            problems.append(f"{where}.rules: must be a table of rule names")
            overrides = {}
        lists: dict[str, list[Any]] = {t: list(self.of_type(t)) for t in types}
        before = len(problems)
        for rule_name, fields in overrides.items():
            at = f"{where}.rules.{rule_name}"
            try:
                base = self.by_name(rule_name)
            except KeyError:
                problems.append(f"{at}: no rule of that name in the default programme")
                continue
            if not isinstance(fields, dict):
                problems.append(f"{at}: must be a table")
                continue
            model = types[base.scenario_type].rule_model
            unknown = [f for f in fields if f not in model.model_fields or f in ("name", "scenario_type")]
            for f in unknown:
                problems.append(f"{at}.{f}: a {base.scenario_type} rule has no such field to override")
            if unknown:
                continue
            try:
                merged = model.model_validate({**base.model_dump(), **fields})
            except ValidationError as exc:
                problems += [f"{at}.{pydantic_loc(e['loc'])}: {e['msg']}" for e in exc.errors()]
                continue
            rules = lists[base.scenario_type]
            rules[rules.index(base)] = merged
        for t in types:
            own = table.get(t, [])
            if own:
                lists[t] = lists[t] + (own if isinstance(own, list) else [own])
        if len(problems) > before:
            return None
        try:
            return Rules.model_validate({**data, **lists})
        except ValidationError as exc:
            problems += [f"{where}.{pydantic_loc(e['loc'])}: {e['msg']}" for e in exc.errors()]
            return None

    # -- the programmes ----------------------------------------------------------------------

    def organization_ids(self) -> list[uuid.UUID]:
        return list(self._orgs)

    def organization(self, org: uuid.UUID | None) -> Rules:
        """The effective programme of ``org``'s mentors: its own, or the default (self). Asked
        per candidate: reads the private attribute from pydantic's slot, not through
        ``BaseModel.__getattr__`` (issue 18: 0.5 s of a profiled first sweep at 100k)."""
        if org is None:
            return self
        private = self.__pydantic_private__
        found = private["_orgs"].get(org) if private is not None else None
        return found[1] if found is not None else self

    def organization_name(self, org: uuid.UUID | None) -> str | None:
        found = self._orgs.get(org) if org is not None else None
        return found[0] if found is not None else None

    def organization_names(self) -> dict[uuid.UUID, str]:
        """The names the rules file gives organisations (pages, report, sweep)."""
        return {org: name for org, (name, _) in self._orgs.items() if name}

    def overrides(self, org: uuid.UUID | None) -> dict[str, Any]:
        """What the rules file sets for ``org`` (explain, the decision log): its table as written."""
        if org is None:
            return {}
        return dict(self.organizations.get(str(org), {}))

    def rule_names(self) -> list[str]:
        """Every rule name of any programme, in evaluation order: the default's, then each
        organisation's own rules in file order (registry order within each)."""
        if self._names is None:
            names = [r.name for r in self.all()]
            for _, effective in self._orgs.values():
                names += [r.name for r in effective.all() if r.name not in names]
            self._names = names
        return self._names

    def variants(self, name: str) -> Variants:
        found = self._variants.get(name)
        if found is None:
            default = next((r for r in self.all() if r.name == name), None)
            orgs = []
            for org, (_, effective) in self._orgs.items():
                orgs.append((org, next((r for r in effective.all() if r.name == name), None)))
            found = self._variants[name] = Variants(name, default, tuple(orgs))
        return found

    def differing_organizations(self) -> frozenset[uuid.UUID]:
        """The organisations whose mentors run some rule otherwise than the default programme
        (their own parameters, their own rule, or a rule they do not run): the only ones whose
        mentors' candidates need their organisation. An organisation listed for its name, locale
        or policy keys alone (cap, quiet hours, holdouts) is not among them."""
        if self._differing is None:
            out: set[uuid.UUID] = set()
            for name in self.rule_names():
                variants = self.variants(name)
                default = variants.default if variants.default_runs else None
                out |= {org for org, _ in variants.orgs if variants.for_org(org) != default}
            self._differing = frozenset(out)
        return self._differing

    def anywhere(self) -> list[RuleBase]:
        """One rule per name enabled in any programme, in evaluation order: the default's rule
        if it runs, else the first organisation's (the representative the loops carry)."""
        if self._anywhere is None:
            out = []
            for s in SCENARIOS:
                for name in dict.fromkeys(self._names_of_type(s.type)):
                    found = self.variants(name).distinct()
                    if found:
                        out.append(found[0])
            self._anywhere = out
        return list(self._anywhere)

    def _names_of_type(self, scenario_type: str) -> list[str]:
        names = [r.name for r in self.of_type(scenario_type)]
        for _, effective in self._orgs.values():
            names += [r.name for r in effective.of_type(scenario_type)]
        return names

    def of_type(self, scenario_type: str) -> list[RuleBase]:
        rules: list[RuleBase] = getattr(self, scenario_type)
        return rules

    def all(self) -> list[RuleBase]:
        """Every rule of this programme, in evaluation order (registry order, then file order)."""
        return [r for s in SCENARIOS for r in self.of_type(s.type)]

    def enabled(self) -> list[RuleBase]:
        """The rules to evaluate: each name enabled in any programme (``anywhere``); a mentor
        gets the effective variant of their organisation (``variants``)."""
        return self.anywhere() if self._orgs else [r for r in self.all() if r.enabled]

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
