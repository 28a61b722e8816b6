"""The examples, run as modules from the repository root (so that they share `common`):

    python -m examples.imdb.main     # the IMDB sentiment classifier
    python -m examples.lm.main       # a word-level language model on the IMDB text
"""
