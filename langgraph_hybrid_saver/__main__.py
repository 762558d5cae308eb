"""`python -m langgraph_hybrid_saver`: the operators' command line (`cli.main`)."""

import sys

from langgraph_hybrid_saver.cli import main

sys.exit(main())
