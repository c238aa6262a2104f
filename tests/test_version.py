"""One version: the installed distribution's and the package's."""

from importlib.metadata import version

import sandbox_agent
from sandbox_agent.version import __version__


def test_the_package_reports_the_installed_distribution_version() -> None:
    assert __version__ == version("sandbox-agent") == sandbox_agent.__version__
