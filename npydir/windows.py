"""Placeholder: replaced by its owner during the first session."""

def gather_windows(*args, **kwargs):
    raise NotImplementedError("windows.gather_windows")

