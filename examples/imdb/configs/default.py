"""The defaults: the classic Keras stacked model (the "seed"), and where and how to run."""


def get_config():
  return dict(
      cell="lstm",        # Keras LSTM layers
      hidden=(5, 5),      # LSTM(5, return_sequences=True) -> LSTM(5)
      embed=32,           # Embedding(10000, 32)
      vocab=10000,        # imdb.load_data(num_words=10000); ids 0 (padding), 1 (unknown) included
      maxlen=100,         # pad_sequences(maxlen=100); the LAST 100 tokens are kept, as Keras does
      pooling="last",     # the top layer's state at the last token (the last LSTM's output)
      bucket=0,           # cut batches of similar-length reviews to multiples of N steps; 0 = off
      dropout=0.0,        # the seed has none
      time_loop="auto",   # per layer: oneDNN's fused LSTM/GRU on the CPU where faster, else the scan
      residual=False,     # add each layer's input to its output (layers 1+, equal widths)
      epochs=5,           # model.fit(epochs=5)
      batch_size=32,      # Keras' default batch size
      lr=1e-3,            # Adam's Keras default
      schedule="constant",  # or "cosine": decay --lr to 0 over the --epochs of the run
      clip=0.0,           # max global gradient norm; 0 = no clipping, as the seed's Adam
      val_split=0.2,      # validation_split=0.2, held out at random (seeded) here
      seed=0,             # parameters, split, data order and dropout all follow from it
      select="best",      # test the epoch with the best val accuracy (Keras' restore_best_weights)
      eval_batch_size=500,  # rows per evaluation step (no gradients, so larger is fine)
      ckpt_every=0,       # also checkpoint every N steps inside an epoch; 0 = at epoch ends only
      limit_train=0,      # use only the first N training reviews (0 = all 25,000)
      limit_test=0,       # evaluate on the first N test reviews (0 = all 25,000)
      log_grad_norms=False,  # log per-layer gradient norms each epoch
      data_dir=None,      # tfds data dir; else $TFDS_DATA_DIR, ../shared/..., ~/tensorflow_datasets
      download=True,      # download and prepare imdb_reviews (once) if the data dir holds none
      download_url=None,  # where to get aclImdb_v1.tar.gz; None = tfds' own URL (Stanford's)
      out=None,           # metrics.json, curves.png, checkpoints/; None = runs/imdb/<date-time>
      resume=False,       # require a checkpoint in --out (one there is continued anyway)
      export=None,        # after training, write the inference function (jax.export) here
      mesh=0,             # split every batch over N devices (--mesh data=N); 0 = one device;
                          # "auto": every device (on a CPU, one virtual device per core)
      coordinator=None,   # HOST:PORT of process 0 of a multi-process run, or "auto"
      num_processes=1,    # processes of a multi-process run
      process_id=0,       # this process's index in it
      compile_cache="auto",  # persistent XLA cache; auto = $JAX_COMPILATION_CACHE_DIR or ~/.cache
      data_cache="auto",  # encoded-reviews cache dir; auto = ~/.cache/deeprnn_jax/imdb; off
  )
