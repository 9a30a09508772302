"""``python -m recsys_core <command>``: validate, train, recommend, evaluate, explain, score."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
