"""A customer-support LangGraph workflow that survives SIGKILL and a Redis wipe.

Run `python -m examples.support_workflow`; see README.md beside this file.
"""
