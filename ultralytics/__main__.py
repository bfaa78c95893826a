"""`python -m ultralytics ...` runs the `yolo` command line."""

from ultralytics.cli import entrypoint

if __name__ == "__main__":
    raise SystemExit(entrypoint())
