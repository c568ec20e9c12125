"""Run an eval suite (thin wrapper over ``alignkit eval``):

    python evals/run.py --suite evals/quick.yaml --model base=smollm2-135m-instruct --model fdpo=PATH
"""

import sys

from alignkit.cli import main

if __name__ == "__main__":  # vLLM may spawn workers: keep the guard
    sys.exit(main(["eval", *sys.argv[1:]]))
