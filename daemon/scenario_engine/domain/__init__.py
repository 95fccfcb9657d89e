"""The engine's domain: what every scenario's rule has in common, whatever its scenario.

Nothing here reads the environment or knows a particular scenario: ``rule.py`` is the base
every scenario package's rule model extends, ``quiet_hours.py`` the quiet window's syntax, and
``default_rules.toml`` the default programme. The validated set of rules, ``Rules``, is built
from the registry's scenario packages, so it lives beside the registry (scenarios/rules.py).
"""
