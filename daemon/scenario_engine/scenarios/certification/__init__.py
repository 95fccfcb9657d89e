"""Certification expiry: remind before a certification lapses, once per reminder tier."""

from scenario_engine.scenarios.certification.oracle import (
    CertificationRow,
    CertificationState,
    applicable_tier,
    build_candidate,
    decide_certifications,
    is_superseded,
    still_applies,
)
from scenario_engine.scenarios.certification.rule import CertificationExpiryRule
from scenario_engine.scenarios.certification.scenario import SCENARIO

__all__ = [
    "SCENARIO",
    "CertificationExpiryRule",
    "CertificationRow",
    "CertificationState",
    "applicable_tier",
    "build_candidate",
    "decide_certifications",
    "is_superseded",
    "still_applies",
]
