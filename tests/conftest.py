"""Start (or rule out) Julia before any test imports torch: juliacall must come first in a process."""

import pyfa.julia


def pytest_configure(config):
    # Where there is no Julia this fails fast (and is cached); where there is, Julia starts now.
    pyfa.julia.available()
