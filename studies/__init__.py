"""Studies that run for minutes to hours, apart from the examples; run from the repository
root as modules, their results (JSON and plots) in studies/results/:

    python -m studies.depth           # the IMDB classifier at depths 1-6 (hours)
    python -m studies.lm --minutes 9  # the language model against PyTorch at depths 1-4
    python -m studies.gradient_flow   # vanishing and exploding gradients (about a minute)
"""
