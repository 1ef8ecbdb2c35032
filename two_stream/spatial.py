"""The spatial stream: `python -m two_stream.spatial train|evaluate|predict --help`."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main(stream="spatial", modality="rgb"))
