"""The tools on top of the library: the ``npydir`` command line, the backend benchmark and the
demo."""
