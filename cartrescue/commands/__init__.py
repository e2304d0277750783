"""One module per command (or command group); ``cartrescue.cli`` only wires them.

These modules and ``cli`` keep their annotations evaluated (no ``from __future__ import
annotations``): typer reads every command's annotations on every start, to build the app, and
compiled and evaluated each one written as a string twice, some 100 million instructions of every
start (``--help`` and each run alike; ``tests/test_cli_start.py``).
"""
