"""Operational scripts: the fault-injection harness and its private servers.

Run them as modules from the repository root (`python -m scripts.fault_injection`)
so that the package in this tree is the one imported.
"""
