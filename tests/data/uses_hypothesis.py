"""A module for tests/test_dependencies.py to find wanting: it imports a test tool."""

import hypothesis  # noqa: F401
