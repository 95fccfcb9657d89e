"""The engine's domain: rules and what every scenario's rule has in common.

Nothing here reads the environment or knows a particular scenario: ``rule.py`` is the base
every scenario package's rule model extends, ``rules.py`` the validated set of rules that the
registry (scenarios/registry.py) assembles from those packages.
"""
