"""Benchmarks of langgraph-hybrid-saver against the official LangGraph savers.

Entry point: `python -m benchmarks.run [--quick] [--out DIR]`, or
`benchmarks.run.main(argv)` from code (a future `bench` CLI command).
"""
