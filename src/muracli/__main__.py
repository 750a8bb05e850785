import sys

from muracli.cli.app import run

if __name__ == "__main__":
    sys.exit(run())
