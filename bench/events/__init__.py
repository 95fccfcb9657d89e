"""The events benchmark (``python -m bench.events``; the parts are described in ``__main__``)."""
