"""Placeholder: replaced by its owner during the first session."""

def convert(*args, **kwargs):
    raise NotImplementedError("convert.convert")

