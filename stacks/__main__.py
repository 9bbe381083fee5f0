"""Entry point Pulumi runs (Pulumi.yaml `main: stacks/`)."""

import sys
from pathlib import Path

# Pulumi runs this file by path; make the project's packages importable.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stacks.program import main

main()
