"""The defaults: PyTorch word_language_model's small LSTM (Zaremba et al. 2014's setup)."""


def get_config():
  return dict(
      level="word",       # tokens are words, or "char": characters (bits per character)
      cell="lstm",        # or "gru"
      time_loop="auto",   # per layer: oneDNN's fused LSTM/GRU on the CPU where faster, else the scan
      residual=False,     # skip connections around every layer above the first (Wu et al. 2016)
      hidden=(200, 200),  # LSTM widths, bottom first (word_language_model: --nhid 200 --nlayers 2)
      embed=200,          # word vectors (--emsize 200)
      vocab=10000,        # ids, <eos> and <unk> included (PTB's size)
      bptt=35,            # steps per truncated-BPTT chunk (--bptt 35)
      batch_size=20,      # continuous streams (--batch_size 20)
      epochs=3,           # passes over the training text
      optimizer="adam",   # or "sgd" (Zaremba: SGD, lr 1; word_language_model: lr 20)
      lr=2e-3,            # Adam's step size
      schedule="cosine",  # decay --lr to 0 over the --epochs of the run, or "constant"
      clip=0.25,          # max global gradient norm (--clip 0.25); 0 = off
      dropout=0.2,        # on word vectors, between layers, on the top outputs (--dropout 0.2)
      tie=False,          # output layer = embedding matrix (needs the top width == --embed)
      init_range=0.1,     # every weight U(-0.1, 0.1) (Zaremba's small model; word_language_model)
      limit_train_tokens=0,  # train on the first N tokens of the 11.8M (0 = all)
      vocab_text="train",  # count the vocabulary over the text trained on, or the whole "corpus"
      val_reviews=5000,   # the first 5,000 reviews of the labelled test split: validation
      test_reviews=5000,  # the next 5,000: test
      eval_batch_size=10,
      val_every=0,        # also validate every N optimizer steps (a learning curve); 0 = per epoch only  # streams when evaluating (word_language_model: 10)
      chunks_per_call=25,  # bptt chunks (optimizer steps) per jitted call: the progress grain
      seed=0,             # parameters and dropout follow from it (the text is never shuffled)
      data_dir=None,      # tfds data dir; else $TFDS_DATA_DIR, ../shared/..., ~/tensorflow_datasets
      out=None,           # metrics.json, curves.png, checkpoints/; None = runs/lm/<date-time>
      resume=False,       # require a checkpoint in --out (one there is continued anyway)
      sample=None,        # a prompt to continue after training, e.g. "this movie was"
      temperature=1.0,    # of the sampling softmax; 0 = always the most likely word
      sample_words=50,    # words sampled after the prompt
      compile_cache="auto",  # persistent XLA cache dir; auto = $JAX_COMPILATION_CACHE_DIR or ~/.cache
  )
