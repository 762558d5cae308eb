import sys

from langgraph_hybrid_saver.cli import main

sys.exit(main())
