"""pinlanding: content-first shopping collections from a product catalogue."""

__version__ = "0.1.0"
