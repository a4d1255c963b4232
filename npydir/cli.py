"""Placeholder: replaced by its owner during the first session."""

def main(*args, **kwargs):
    raise NotImplementedError("cli.main")

