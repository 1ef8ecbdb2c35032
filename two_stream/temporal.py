"""The temporal stream: `python -m two_stream.temporal train|evaluate|predict --help`."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main(stream="temporal", modality="flow"))
