"""The installed distribution's version: ``--version``, the webhook's User-Agent and the
``scenario_engine_build_info`` metric all say the same thing, read from the package metadata
(pyproject's ``version``), never a second copy in the source."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _distribution_version

DISTRIBUTION = "scenario-engine"


def package_version() -> str:
    try:
        return _distribution_version(DISTRIBUTION)
    except PackageNotFoundError:  # imported from a source tree that was never installed
        return "0+unknown"


VERSION = package_version()
USER_AGENT = f"{DISTRIBUTION}/{VERSION}"
