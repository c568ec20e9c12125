"""Run one alignkit dataset builder from its YAML, like ``alignkit build NAME --config data_builders/NAME.yaml``.

    python data_builders/build.py factworld            # uses data_builders/factworld.yaml
    python data_builders/build.py fdpo-mix --set scale=0.5
"""

import sys
from pathlib import Path

from alignkit.cli import main

if __name__ == "__main__":
    args = sys.argv[1:]
    if args and not args[0].startswith("-") and "--config" not in args and "-c" not in args:
        cfg = Path(__file__).with_name(args[0].replace("-", "_") + ".yaml")
        args = [args[0], "--config", str(cfg), *args[1:]]
    sys.exit(main(["build", *args]))
