"""two-stream: train, evaluate and fuse two-stream / TSN action-recognition networks."""
__version__ = "0.1.0"
