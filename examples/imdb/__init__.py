"""A stacked-RNN sentiment classifier on IMDB: `python -m examples.imdb.main`."""
