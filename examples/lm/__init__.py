"""A word-level stacked-LSTM language model on the IMDB text: `python -m examples.lm.main`."""
