"""Thin node classes, one file per node: unpack sockets, call the library, pack results."""
