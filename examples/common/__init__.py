"""What both examples use: IMDB text from tensorflow-datasets, orbax checkpoints, a
persistent compilation cache, provenance for results files, the allocator setting, the
flags' number parser and the default output directory."""
