"""The outside programs a cluster runs (HAProxy, Redis), found or refused for a test.

A test that needs one skips when it is missing, unless ``scripts/test`` (CI) said it must be
there (``PEREGRINE_REQUIRE_HAPROXY=1``, ``PEREGRINE_REQUIRE_REDIS=1``): then it fails, so CI
cannot pass with the cluster untested.
"""

from __future__ import annotations

import os
import shutil

import pytest

#: program -> the variable that makes its absence a failure.
REQUIRED_BY = {"haproxy": "PEREGRINE_REQUIRE_HAPROXY", "redis-server": "PEREGRINE_REQUIRE_REDIS"}


def program(name: str) -> str:
    """The path of ``name`` (looked up in PATH and the sbin folders), or skip/fail."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin:/sbin")
    if found:
        return found
    reason = f"{name} is not installed (apt-get install {name}; ./scripts/test installs it)"
    variable = REQUIRED_BY.get(name)
    if variable and os.environ.get(variable) == "1":
        pytest.fail(f"{variable}=1 but {reason}", pytrace=False)
    pytest.skip(reason)
