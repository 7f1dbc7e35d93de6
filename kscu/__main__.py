"""`python -m kscu ...`: the command-line interface (see kscu/cli.py)."""
from kscu.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
