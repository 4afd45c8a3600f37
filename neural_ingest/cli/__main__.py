"""`python -m neural_ingest.cli`: the same program under the console script's name, so completion works alike."""
import sys

from neural_ingest.cli.app import PROG, main

sys.exit(main(prog_name=PROG))
