# A shim for tools that want a setup.py (Beam's --setup_file falls back to `python setup.py sdist`
# when the `build` module is absent). Everything is declared in pyproject.toml.
from setuptools import setup

setup()
