"""Every bad input we know of, and the error it gets: a table, tested row by row.

Each row is (what is wrong, how it is called, the error type, fragments of the message).
The fragments are chosen so that each message names the argument, says what was expected
and shows what came. The library rows call the public API; the trainer rows call
`python -m examples.imdb.main`'s `run_main(argv)` in-process (argparse errors exit with status 2
and a usage message; data and checkpoint errors print `error: ...` and return 2).

`python tests/test_bad_inputs.py > tests/BAD_INPUTS.md` regenerates the Markdown table
from these rows and the messages they actually get. The tests keep it honest: each row's
test fails when its line in the table (error type and message) differs from what the input
gets now, and `test_table_is_up_to_date` when a row is missing, extra or out of order, or
the summary line's counts are off.
"""

import contextlib
import functools
import io
import os
import pathlib
import sys
import tempfile
import types
from typing import Callable, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import deeprnn_jax as drnn
import helpers

REPO = pathlib.Path(__file__).resolve().parents[1]
TABLE = REPO / "tests" / "BAD_INPUTS.md"


class Case(NamedTuple):
  what: str  # the bad input, in words
  call: Callable[[], object]  # library rows: a thunk; trainer rows: see TrainerCase
  error: type
  fragments: Sequence[str]  # all must appear in the message


class TrainerCase(NamedTuple):
  what: str
  argv: Sequence[str]  # "{tmp}" is replaced by a fresh directory that `setup` prepares
  setup: Callable[[pathlib.Path], None]
  error: str  # "usage" (argparse, exit 2) or "error" (the trainer's message, exit 2)
  fragments: Sequence[str]
  env: Mapping[str, str] = types.MappingProxyType({})  # set while the trainer runs


# --------------------------------------------------------------------------------------
# Library rows. Models and params are built once, on first use.

@functools.cache
def lstm():
  model = drnn.stacked_rnn("lstm", 3, (4, 4))
  return model, model.init(jax.random.key(0))


@functools.cache
def rnn():
  model = drnn.stacked_rnn("rnn", 3, (4, 2), dropout=0.5)
  return model, model.init(jax.random.key(0))


@functools.cache
def bigru():
  model = drnn.stacked_rnn("gru", 3, (4,), bidirectional=True)
  return model, model.init(jax.random.key(0))


@functools.cache
def cudnn_lstm():
  model = drnn.stacked_rnn("lstm", 3, (4,), time_loop="cudnn")
  return model, model.init(jax.random.key(0))


XS = np.ones((2, 5, 3), np.float32)  # batch 2, time 5, features 3


def apply(make=lstm, xs=XS, **kw):
  model, params = make()
  return lambda: model.apply(params, xs, **kw)


def stack(*args, **kw):
  return lambda: drnn.stacked_rnn(*args, **kw)


def torch_dict(**change):
  """A 2-layer torch LSTM(3 -> 4, 4) state_dict with entries changed or removed (None)."""
  d = {}
  for k, in_w in enumerate((3, 4)):
    d.update({f"weight_ih_l{k}": np.zeros((16, in_w)), f"weight_hh_l{k}": np.zeros((16, 4)),
              f"bias_ih_l{k}": np.zeros(16), f"bias_hh_l{k}": np.zeros(16)})
  d.update(change)
  return {k: v for k, v in d.items() if v is not None}


def zeros_state(model, batch=2, **change):
  state = list(model.initial_state(batch))
  for l, v in change.items():
    state[int(l[1:])] = v
  return tuple(state)


def _lstm_state(**change):
  return zeros_state(lstm()[0], **change)


H = jnp.zeros((2, 4))
LIBRARY = [
    # xs
    Case("xs not an array (a list)", apply(xs=[[[0.0] * 3] * 5] * 2), TypeError,
         ["xs", "expected an array [batch, time, 3]", "got list"]),
    Case("xs of rank 2", apply(xs=np.ones((5, 3), np.float32)), ValueError,
         ["xs", "expected rank 3 [batch, time, features]", "got rank 2", "(5, 3)"]),
    Case("xs of rank 4", apply(xs=np.ones((2, 5, 3, 1), np.float32)), ValueError,
         ["xs", "expected rank 3", "got rank 4"]),
    Case("xs with the wrong feature size", apply(xs=np.ones((2, 5, 4), np.float32)), ValueError,
         ["xs", "expected 3 features (input_size)", "got shape (2, 5, 4)"]),
    Case("xs of an integer dtype", apply(xs=np.ones((2, 5, 3), np.int32)), TypeError,
         ["xs", "expected a floating dtype", "got int32"]),
    Case("xs of a complex dtype", apply(xs=np.ones((2, 5, 3), np.complex64)), TypeError,
         ["xs", "expected a floating dtype", "got complex64"]),
    Case("xs with zero time steps", apply(xs=np.ones((2, 0, 3), np.float32)), ValueError,
         ["xs", "expected at least one time step", "got shape (2, 0, 3)"]),
    # lengths
    Case("lengths of the wrong shape ([3] for batch 2)", apply(lengths=np.array([5, 5, 5])),
         ValueError, ["lengths", "expected shape (2,)", "got (3,)"]),
    Case("lengths of rank 2", apply(lengths=np.array([[5], [5]])), ValueError,
         ["lengths", "expected shape (2,)", "got (2, 1)"]),
    Case("lengths of a float dtype", apply(lengths=np.array([5.0, 2.0])), TypeError,
         ["lengths", "expected an integer dtype", "got float64"]),
    Case("lengths of bool dtype", apply(lengths=np.array([True, False])), TypeError,
         ["lengths", "expected an integer dtype", "got bool"]),
    Case("lengths negative", apply(lengths=np.array([-1, 5])), ValueError,
         ["lengths", "expected values in [0, 5]", "got min -1"]),
    Case("lengths > T", apply(lengths=np.array([6, 5])), ValueError,
         ["lengths", "expected values in [0, 5]", "max 6"]),
    # initial_state
    Case("initial_state not a tuple (one array)", apply(initial_state=H), TypeError,
         ["initial_state", "expected a tuple with one carry per layer (2 layers)",
          "got ArrayImpl"]),
    Case("initial_state with too few layers",
         lambda: lstm()[0].apply(lstm()[1], XS, initial_state=_lstm_state()[:1]), ValueError,
         ["initial_state", "expected 2 entries (one per layer)", "got 1"]),
    Case("initial_state of an LSTM without c (h only)",
         lambda: lstm()[0].apply(lstm()[1], XS, initial_state=_lstm_state(l1=H)), TypeError,
         ["initial_state[1]", "expected LSTMState(h, c)", "(2, 4)", "got ArrayImpl"]),
    Case("initial_state h of the wrong width",
         lambda: lstm()[0].apply(lstm()[1], XS, initial_state=_lstm_state(
             l0=drnn.LSTMState(jnp.zeros((2, 5)), H))), ValueError,
         ["initial_state[0].h", "expected shape (2, 4)", "got (2, 5)"]),
    Case("initial_state of the wrong batch size",
         lambda: lstm()[0].apply(lstm()[1], np.ones((3, 5, 3), np.float32),
                                 initial_state=_lstm_state()), ValueError,
         ["initial_state[0].h", "expected shape (3, 4)", "got (2, 4)"]),
    Case("initial_state of an integer dtype",
         lambda: lstm()[0].apply(lstm()[1], XS, initial_state=jax.tree.map(
             lambda a: a.astype(jnp.int32), _lstm_state())), TypeError,
         ["initial_state[0].h", "expected a floating dtype", "got int32"]),
    Case("initial_state carry not an array (rnn)",
         lambda: rnn()[0].apply(rnn()[1], XS, initial_state=(H, None)), TypeError,
         ["initial_state[1]", "expected an array of shape (2, 2)", "got NoneType"]),
    Case("initial_state of a bidirectional layer not a (forward, backward) pair",
         lambda: bigru()[0].apply(bigru()[1], XS, initial_state=(H,)), TypeError,
         ["initial_state[0]", "expected a pair (forward carry, backward carry)",
          "got ArrayImpl"]),
    # construction
    Case("hidden_sizes empty", stack("lstm", 3, ()), ValueError,
         ["hidden_sizes", "expected at least one layer", "got an empty sequence"]),
    Case("hidden_sizes None", stack("lstm", 3, None), TypeError,
         ["hidden_sizes", "expected a sequence of positive ints", "got None"]),
    Case("hidden_sizes with a 0", stack("lstm", 3, (4, 0)), ValueError,
         ["hidden_sizes[1]", "expected a positive int", "got 0"]),
    Case("hidden_sizes negative", stack("lstm", 3, (-2,)), ValueError,
         ["hidden_sizes[0]", "expected a positive int", "got -2"]),
    Case("hidden_sizes not ints (4.0)", stack("lstm", 3, (4.0,)), ValueError,
         ["hidden_sizes[0]", "expected a positive int", "got 4.0"]),
    Case("hidden_sizes a string ('a,b')", stack("lstm", 3, "a,b"), ValueError,
         ["hidden_sizes[0]", "expected a positive int", "got 'a'"]),
    Case("hidden_sizes True", stack("lstm", 3, (True,)), ValueError,
         ["hidden_sizes[0]", "expected a positive int", "got True"]),
    Case("input_size 0", stack("lstm", 0, (4,)), ValueError,
         ["input_size", "expected a positive int", "got 0"]),
    Case("input_size a string", stack("lstm", "3", (4,)), ValueError,
         ["input_size", "expected a positive int", "got '3'"]),
    Case("unknown cell", stack("foo", 3, (4,)), ValueError,
         ["cell", "expected one of ['gru', 'lstm', 'rnn']", "got 'foo'"]),
    Case("cell name in capitals", stack("LSTM", 3, (4,)), ValueError,
         ["cell", "expected one of ['gru', 'lstm', 'rnn']", "got 'LSTM'"]),
    Case("unknown nonlinearity", stack("rnn", 3, (4,), nonlinearity="sigmoid"), ValueError,
         ["nonlinearity", "expected one of ['relu', 'tanh']", "got 'sigmoid'"]),
    Case("nonlinearity for an LSTM", stack("lstm", 3, (4,), nonlinearity="relu"), ValueError,
         ["nonlinearity", "only the 'rnn' cell takes one", "got 'relu'"]),
    Case("nonlinearity for a GRU", stack("gru", 3, (4,), nonlinearity="relu"), ValueError,
         ["nonlinearity", "only the 'rnn' cell takes one", "got 'relu'"]),
    Case("dropout 1", stack("lstm", 3, (4,), dropout=1.0), ValueError,
         ["dropout", "expected a rate in [0, 1)", "got 1.0"]),
    Case("dropout negative", stack("lstm", 3, (4,), dropout=-0.1), ValueError,
         ["dropout", "expected a rate in [0, 1)", "got -0.1"]),
    Case("dropout NaN", stack("lstm", 3, (4,), dropout=float("nan")), ValueError,
         ["dropout", "expected a rate in [0, 1)", "got nan"]),
    Case("dropout a string", stack("lstm", 3, (4,), dropout="0.5"), ValueError,
         ["dropout", "expected a rate in [0, 1)", "got '0.5'"]),
    Case("recurrent_dropout 1.5", stack("lstm", 3, (4,), recurrent_dropout=1.5), ValueError,
         ["recurrent_dropout", "expected a rate in [0, 1)", "got 1.5"]),
    Case("unroll 0", stack("lstm", 3, (4,), unroll=0), ValueError,
         ["unroll", "expected a positive int", "got 0"]),
    Case("unknown initializer name", stack("lstm", 3, (4,), kernel_init="foo"), ValueError,
         ["kernel_init", "expected one of (", "'glorot_uniform'", "or a callable", "got 'foo'"]),
    Case("initializer neither name nor callable", stack("lstm", 3, (4,), recurrent_init=3),
         ValueError, ["recurrent_init", "or a callable", "got 3"]),
    Case("layer_norm for a simple RNN", stack("rnn", 3, (4,), layer_norm=True), ValueError,
         ["layer_norm", "only the 'lstm' and 'gru' cells", "got cell 'rnn'"]),
    Case("layer_norm not a bool", stack("lstm", 3, (4,), layer_norm="yes"), TypeError,
         ["layer_norm", "expected True or False", "got 'yes'"]),
    Case("bidirectional not a bool", stack("lstm", 3, (4,), bidirectional=1), TypeError,
         ["bidirectional", "expected True or False", "got 1"]),
    Case("compute_dtype not a dtype", stack("lstm", 3, (4,), compute_dtype="foo"), TypeError,
         ["compute_dtype", "expected None or a floating dtype", "got 'foo'"]),
    Case("compute_dtype an integer dtype", stack("lstm", 3, (4,), compute_dtype=jnp.int32),
         ValueError, ["compute_dtype", "expected a floating dtype", "got int32"]),
    Case("unknown schedule", stack("lstm", 3, (4, 4), schedule="foo"), ValueError,
         ["schedule", "expected one of ('layer', 'wavefront', 'pipeline')", "got 'foo'"]),
    Case("wavefront schedule with bidirectional",
         stack("lstm", 3, (4, 4), schedule="wavefront", bidirectional=True), ValueError,
         ["schedule", "bidirectional", "expected bidirectional=False",
          "got bidirectional=True"]),
    Case("unknown time loop", stack("lstm", 3, (4,), time_loop="fused"), ValueError,
         ["time_loop", "expected one of ('scan', 'cudnn', 'onednn', 'auto')", "got 'fused'"]),
    Case("cuDNN time loop for a GRU", stack("gru", 3, (4,), time_loop="cudnn"), ValueError,
         ["cell", "expected the LSTM cell of stacked_rnn('lstm', ...)", "got a 'gru' cell"]),
    Case("cuDNN time loop with remat", stack("lstm", 3, (4,), time_loop="cudnn", remat=True),
         ValueError, ["time_loop", "'cudnn' does not support remat", "expected remat=False",
                     "got remat=True"]),
    Case("cuDNN time loop with resets",
         apply(cudnn_lstm, resets=np.zeros((2, 5), bool)), ValueError,
         ["resets", "expected None", "got a bool array [2, 5]"]),
    # apply options
    Case("train=True with dropout and no key", apply(rnn, train=True), ValueError,
         ["key", "needs a PRNG key", "got None"]),
    Case("unknown output selection", apply(output="final"), ValueError,
         ["output", "expected one of ('sequence', 'last', 'all')", "got 'final'"]),
    Case("step with x_t of the wrong width",
         lambda: lstm()[0].step(lstm()[1], _lstm_state(), jnp.ones((2, 4))), ValueError,
         ["x_t", "expected an array [batch, 3]", "got (2, 4)"]),
    Case("step on a bidirectional stack",
         lambda: bigru()[0].step(bigru()[1], bigru()[0].initial_state(2), jnp.ones((2, 3))),
         ValueError, ["step", "expected bidirectional=False", "got bidirectional=True"]),
    Case("layer_params of a layer that does not exist",
         lambda: drnn.layer_params(*lstm(), 2), IndexError,
         ["layer", "expected 0 <= layer < 2", "got 2"]),
    Case("apply with params of another model (widths 5, 5 for 4, 4)",
         lambda: lstm()[0].apply(drnn.stacked_rnn("lstm", 3, (5, 5)).init(jax.random.key(0)),
                                 XS), ValueError,
         ["params", "expected", "shape", "got"]),
    Case("train=True with a key that is not a PRNG key (0)",
         lambda: rnn()[0].apply(rnn()[1], XS, train=True, key=0), TypeError,
         ["key", "expected a PRNG key", "got int"]),
    Case("step with state None",
         lambda: lstm()[0].step(lstm()[1], None, jnp.ones((2, 3))), TypeError,
         ["state", "expected a tuple with one carry per layer", "got NoneType"]),
    Case("forget_bias a string", lambda: drnn.stacked_rnn("lstm", 3, (4,), forget_bias="x"),
         ValueError, ["forget_bias", "expected a number", "got 'x'"]),
    Case("initial_state(batch_size=-1)", lambda: lstm()[0].initial_state(-1), ValueError,
         ["batch_size", "expected a positive int", "got -1"]),
    Case("initial_state(batch_size='2')", lambda: lstm()[0].initial_state("2"), ValueError,
         ["batch_size", "expected a positive int", "got '2'"]),
    Case("apply with params of another structure (a bidirectional GRU's)",
         lambda: lstm()[0].apply(bigru()[1], XS), ValueError,
         ["params", "expected the structure of model.init(key)", "got PyTreeDef"]),
    Case("step with params of another model",
         lambda: lstm()[0].step(rnn()[1], _lstm_state(), jnp.ones((2, 3))), ValueError,
         ["params[0]['b']", "expected shape (1, 16)", "got (1, 4)"]),
    Case("step with a state of the wrong width",
         lambda: lstm()[0].step(lstm()[1], _lstm_state(l1=drnn.LSTMState(H, jnp.zeros((2, 5)))),
                                jnp.ones((2, 3))), ValueError,
         ["state[1].c", "expected shape (2, 4)", "got (2, 5)"]),
    Case("train=True with a raw key of the wrong shape",
         lambda: rnn()[0].apply(rnn()[1], XS, train=True, key=np.zeros(3, np.uint32)), TypeError,
         ["key", "expected a PRNG key", "uint32 of shape (3,)"]),
    Case("forget_bias NaN", lambda: drnn.stacked_rnn("lstm", 3, (4,), forget_bias=float("nan")),
         ValueError, ["forget_bias", "expected a number", "got nan"]),
    # weight import and export
    Case("state_dict not a mapping", lambda: drnn.from_torch(lstm()[0], []), TypeError,
         ["state_dict", "expected a mapping of names to arrays", "got list"]),
    Case("state_dict with a missing entry",
         lambda: drnn.from_torch(lstm()[0], torch_dict(bias_hh_l1=None)), ValueError,
         ["state_dict", "expected the 8 entries", "missing ['bias_hh_l1']"]),
    Case("state_dict with an extra entry (a third layer)",
         lambda: drnn.from_torch(lstm()[0], torch_dict(weight_ih_l2=np.zeros((16, 4)))),
         ValueError, ["state_dict", "expected the 8 entries", "unexpected ['weight_ih_l2']"]),
    Case("state_dict with a mis-shaped entry",
         lambda: drnn.from_torch(lstm()[0], torch_dict(weight_hh_l0=np.zeros((16, 5)))),
         ValueError, ["state_dict['weight_hh_l0']", "expected shape (16, 4)", "got (16, 5)"]),
    Case("from_torch given something else than a model",
         lambda: drnn.from_torch("lstm", torch_dict()), TypeError,
         ["model", "expected a StackedRNN", "got str"]),
    Case("to_torch with params of another width",
         lambda: drnn.to_torch(lstm()[0], rnn()[1]), ValueError,
         ["params[0]['b']", "expected shape (1, 16)", "got (1, 4)"]),
    Case("to_torch with params of another structure",
         lambda: drnn.to_torch(lstm()[0], bigru()[1]), ValueError,
         ["params", "expected the structure of model.init(key)", "got PyTreeDef"]),
    Case("from_keras with the wrong number of layers",
         lambda: drnn.from_keras(lstm()[0], [[]]), ValueError,
         ["weights", "expected 2 entries (one get_weights() list per layer)", "got 1"]),
    # training utilities
    Case("optimizer learning rate negative", lambda: drnn.optimizer(-1e-3), ValueError,
         ["learning_rate", "expected a positive finite number", "got -0.001"]),
    Case("optimizer learning rate NaN", lambda: drnn.optimizer(float("nan")), ValueError,
         ["learning_rate", "expected a positive finite number", "got nan"]),
    Case("optimizer max_norm 0", lambda: drnn.optimizer(1e-3, max_norm=0), ValueError,
         ["max_norm", "expected a positive number or None", "got 0"]),
    Case("train step with a loss that is not callable",
         lambda: drnn.make_train_step(3, drnn.optimizer()), TypeError,
         ["loss_fn", "expected a callable", "int"]),
    Case("loss with labels of another shape",
         lambda: drnn.sigmoid_binary_loss(jnp.zeros(4), jnp.zeros(3)), ValueError,
         ["labels", "expected the shape of logits", "(4,)", "got (3,)"]),
    # another library's tensors, and params of the wrong dtype
    Case("xs a torch tensor", lambda: apply(xs=_torch().ones(2, 5, 3))(), TypeError,
         ["xs", "expected an array [batch, time, 3] as a jax.Array or numpy.ndarray",
          "got torch.Tensor", "np.asarray"]),
    Case("lengths a torch tensor",
         lambda: apply(lengths=_torch().tensor([5, 2], dtype=_torch().int32))(), TypeError,
         ["lengths", "jax.Array or numpy.ndarray", "got torch.Tensor"]),
    Case("initial_state holding a torch tensor",
         lambda: apply(initial_state=_lstm_state(l0=drnn.LSTMState(_torch().zeros(2, 4), H)))(),
         TypeError, ["initial_state[0].h", "jax.Array or numpy.ndarray", "got torch.Tensor"]),
    Case("params of an integer dtype",
         lambda: lstm()[0].apply(jax.tree.map(lambda a: a.astype(jnp.int32), lstm()[1]), XS),
         TypeError, ["params[0]", "expected a floating dtype", "got int32"]),
    Case("step with x_t a torch tensor",
         lambda: lstm()[0].step(lstm()[1], _lstm_state(), _torch().ones(2, 3)), TypeError,
         ["x_t", "jax.Array or numpy.ndarray", "got torch.Tensor"]),
    Case("lengths > T under jit, in a drnn.checked apply",
         lambda: drnn.checked(lstm()[0].apply)(lstm()[1], XS, jnp.array([6, 5])), ValueError,
         ["lengths", "expected values in [0, 5]", "got min 5 and max 6"]),
    Case("initial_state in bf16 for float32 inputs (narrower than the computation)",
         lambda: apply(initial_state=lstm()[0].initial_state(2, jnp.bfloat16))(), TypeError,
         ["initial_state[0].h", "expected a state in float32", "got bfloat16",
          "initial_state(batch_size, jnp.float32)"]),
]


def _torch():
  return helpers.import_torch()


# --------------------------------------------------------------------------------------
# Trainer rows.

def _nothing(tmp):
  pass


def _empty_dir(tmp):
  (tmp / "tfds").mkdir()


def _broken_dataset(tmp):
  version = tmp / "tfds" / "imdb_reviews" / "plain_text" / "1.0.0"
  version.mkdir(parents=True)
  (version / "dataset_info.json").write_text("{not json")
  (version / "imdb_reviews-train.array_record-00000-of-00001").write_bytes(b"junk")


def _old_checkpoint(tmp):
  (tmp / "run").mkdir()
  (tmp / "run" / "checkpoint.npz").write_bytes(b"PK\x03\x04 an earlier trainer's checkpoint")


def _saved_run(tmp, **config_change):
  """A checkpoint as the trainer writes it (global step 5), for the seed model, configured
  by the flags the trainer would have been given (`config_change`)."""
  from examples.common import checkpoint
  from examples.imdb import configs
  meta = {"rng": [0, 0], "epoch": 1, "step": 0, "global_step": 5, "sums": {}, "history": [],
          "best": None, "config": {**configs.DEFAULTS, "hidden": [5, 5], **config_change}}
  checkpoint.save(str(tmp / "run"), 5, {"params": {"w": np.zeros((2, 3), np.float32)}}, meta)


def _damaged_meta(tmp):
  _saved_run(tmp)
  (tmp / "run" / "checkpoints" / "5" / "meta" / "metadata").write_text("not json\n")


def _truncated_array_index(tmp):
  _saved_run(tmp, limit_train=40, limit_test=20)
  path = tmp / "run" / "checkpoints" / "5" / "state" / "_METADATA"
  path.write_bytes(path.read_bytes()[:-40])


TRAINER = [
    TrainerCase("--cell foo", ["--cell", "foo"], _nothing, "usage",
                ["--cell", "invalid choice: 'foo'", "choose from", "'lstm'"]),
    TrainerCase("--hidden 0", ["--hidden", "0"], _nothing, "usage",
                ["--hidden", "expected positive widths like 5,5", "got '0'"]),
    TrainerCase("--hidden 5,-1", ["--hidden", "5,-1"], _nothing, "usage",
                ["--hidden", "expected positive widths", "got '5,-1'"]),
    TrainerCase("--hidden a,b", ["--hidden", "a,b"], _nothing, "usage",
                ["--hidden", "expected comma-separated widths like 5,5", "got 'a,b'"]),
    TrainerCase("--hidden '' (empty)", ["--hidden", ""], _nothing, "usage",
                ["--hidden", "expected comma-separated widths", "got ''"]),
    TrainerCase("--lr -0.1", ["--lr", "-0.1"], _nothing, "usage",
                ["--lr", "expected a value > 0.0", "got '-0.1'"]),
    TrainerCase("--lr 0", ["--lr", "0"], _nothing, "usage",
                ["--lr", "expected a value > 0.0", "got '0'"]),
    TrainerCase("--lr abc", ["--lr", "abc"], _nothing, "usage",
                ["--lr", "expected float", "got 'abc'"]),
    TrainerCase("--lr nan", ["--lr", "nan"], _nothing, "usage", ["--lr", "expected a finite number", "got 'nan'"]),
    TrainerCase("--lr inf", ["--lr", "inf"], _nothing, "usage", ["--lr", "expected a finite number", "got 'inf'"]),
    TrainerCase("--val-split 1.5", ["--val-split", "1.5"], _nothing, "usage",
                ["--val-split", "expected a value > 0.0 and < 1.0", "got '1.5'"]),
    TrainerCase("--val-split 0", ["--val-split", "0"], _nothing, "usage",
                ["--val-split", "expected a value > 0.0 and < 1.0", "got '0'"]),
    TrainerCase("--val-split nan", ["--val-split", "nan"], _nothing, "usage",
                ["--val-split", "expected a finite number", "got 'nan'"]),
    TrainerCase("--dropout 1", ["--dropout", "1"], _nothing, "usage",
                ["--dropout", "expected a value >= 0.0 and < 1.0", "got '1'"]),
    TrainerCase("--dropout nan", ["--dropout", "nan"], _nothing, "usage",
                ["--dropout", "expected a finite number", "got 'nan'"]),
    TrainerCase("--clip nan", ["--clip", "nan"], _nothing, "usage",
                ["--clip", "expected a finite number", "got 'nan'"]),
    TrainerCase("--clip -1", ["--clip", "-1"], _nothing, "usage",
                ["--clip", "expected a value >= 0.0", "got '-1'"]),
    TrainerCase("--epochs 0", ["--epochs", "0"], _nothing, "usage",
                ["--epochs", "expected a value >= 1", "got '0'"]),
    TrainerCase("--epochs 1.5", ["--epochs", "1.5"], _nothing, "usage",
                ["--epochs", "expected int", "got '1.5'"]),
    TrainerCase("--batch-size 0", ["--batch-size", "0"], _nothing, "usage",
                ["--batch-size", "expected a value >= 1", "got '0'"]),
    TrainerCase("--vocab 2", ["--vocab", "2"], _nothing, "usage",
                ["--vocab", "expected a value >= 3", "got '2'"]),
    TrainerCase("--maxlen 0", ["--maxlen", "0"], _nothing, "usage",
                ["--maxlen", "expected a value >= 1", "got '0'"]),
    TrainerCase("--seed -1", ["--seed", "-1"], _nothing, "usage",
                ["--seed", "expected a value >= 0", "got '-1'"]),
    TrainerCase("--preset foo", ["--preset", "foo"], _nothing, "usage",
                ["--preset", "invalid choice: 'foo'", "'strong'"]),
    TrainerCase("--pooling foo", ["--pooling", "foo"], _nothing, "usage",
                ["--pooling", "invalid choice: 'foo'", "'meanmax'"]),
    TrainerCase("an unknown flag (--hiden)", ["--hiden", "5"], _nothing, "usage",
                ["unrecognized arguments: --hiden"]),
    TrainerCase("--resume without --out", ["--resume"], _nothing, "usage",
                ["--resume needs --out DIR"]),
    TrainerCase("--coordinator without --out",
                ["--coordinator", "127.0.0.1:1234", "--num-processes", "2", "--process-id",
                 "0"], _nothing, "usage",
                ["--coordinator needs --out DIR", "one directory for all the processes"]),
    TrainerCase("--data-dir that does not exist, --no-download",
                ["--data-dir", "{tmp}/nowhere", "--no-download"], _nothing,
                "error", ["the data dir does not exist", "--data-dir", "TFDS_DATA_DIR",
                          "Looked in: {tmp}/nowhere"]),
    TrainerCase("--data-dir empty, --no-download", ["--data-dir", "{tmp}/tfds", "--no-download"],
                _empty_dir, "error",
                ["no prepared imdb_reviews", "--data-dir", "Looked in: {tmp}/tfds"]),
    TrainerCase("--data-dir with a broken dataset", ["--data-dir", "{tmp}/tfds"],
                _broken_dataset, "error",
                ["could not read the train split of imdb_reviews", "--data-dir",
                 "Looked in: {tmp}/tfds"]),
    TrainerCase("--resume with no checkpoint in --out", ["--out", "{tmp}/run", "--resume"],
                _nothing, "error",
                ["no checkpoint to resume from", "{tmp}/run/checkpoints holds none",
                 "run without --resume"]),
    TrainerCase("--out holding a checkpoint of the earlier .npz format",
                ["--out", "{tmp}/run"], _old_checkpoint, "error",
                ["{tmp}/run/checkpoint.npz is a checkpoint of an earlier version",
                 "expected orbax checkpoints in {tmp}/run/checkpoints",
                 "delete {tmp}/run/checkpoint.npz to start again"]),
    TrainerCase("--out holding a checkpoint with damaged metadata", ["--out", "{tmp}/run"],
                _damaged_meta, "error",
                ["the checkpoint {tmp}/run/checkpoints/5 is corrupt or not a checkpoint",
                 "JSONDecodeError", "delete {tmp}/run/checkpoints to start again"]),
    TrainerCase("--out holding a checkpoint with a truncated array index",
                ["--data-dir", "{data}", "--limit-train", "40", "--limit-test", "20",
                 "--out", "{tmp}/run"], _truncated_array_index, "error",
                ["the checkpoint {tmp}/run/checkpoints/5 is corrupt",
                 "delete {tmp}/run/checkpoints to start again"]),
    TrainerCase("--out holding a checkpoint of another model (--cell, --hidden)",
                ["--out", "{tmp}/run", "--cell", "lstm", "--hidden", "8,8"],
                functools.partial(_saved_run, cell="gru"), "error",
                ["the checkpoint in {tmp}/run was written with a different model or data "
                 "configuration", "--cell (checkpoint: 'gru', now: 'lstm')",
                 "--hidden (checkpoint: (5, 5), now: (8, 8))", "use another --out"]),
    TrainerCase("--out holding a checkpoint whose arrays belong to another model",
                ["--data-dir", "{data}", "--limit-train", "40", "--limit-test", "20",
                 "--out", "{tmp}/run", "--resume"],
                functools.partial(_saved_run, limit_train=40, limit_test=20), "error",
                ["the checkpoint {tmp}/run/checkpoints/5 does not fit the model being built",
                 "it holds 1 arrays, the model being built has", "only there: params.w",
                 "only here: best_params.", "a different model configuration"]),
]


# --------------------------------------------------------------------------------------
# Running the rows.

@functools.cache
def trainer_module():
  from examples.imdb import main
  return main


def data_dir():
  """The prepared IMDB data ($TFDS_DATA_DIR, else ../shared/tensorflow_datasets), or None."""
  path = os.environ.get("TFDS_DATA_DIR") or str(REPO.parent / "shared" / "tensorflow_datasets")
  return path if os.path.isdir(os.path.join(path, "imdb_reviews")) else None


DATA_DIR = data_dir()


@contextlib.contextmanager
def _environ(values):
  """`values` set in os.environ meanwhile; the previous values back afterwards."""
  before = {k: os.environ.get(k) for k in values}
  os.environ.update(values)
  try:
    yield
  finally:
    for k, v in before.items():
      if v is None:
        os.environ.pop(k, None)
      else:
        os.environ[k] = v


def run_trainer(case, tmp, capsys):
  """Runs the trainer on the row's argv: (what kind of error, its message)."""
  main = trainer_module()
  case.setup(tmp)
  argv = [a.replace("{tmp}", str(tmp)).replace("{data}", str(DATA_DIR)) for a in case.argv]
  if case.error == "usage":  # should a bad flag get through, stop at the data, not train
    argv += ["--data-dir", str(tmp / "no-data"), "--no-download"]
  # in-process: JAX's process-wide compilation cache stays closed, no data cache written
  for flag in ("--compile-cache", "--data-cache"):
    if flag not in argv:
      argv += [flag, "off"]
  capsys.readouterr()
  try:
    with _environ(case.env):
      code = main.run_main(argv)
  except SystemExit as e:  # argparse: usage and message on stderr, status 2
    err = capsys.readouterr().err
    assert e.code == 2, err
    return "usage", err
  err = capsys.readouterr().err
  assert code == main.train.EXIT_ERROR, (code, err)
  return "error", err


def _fragments(case, tmp=""):
  return [f.replace("{tmp}", str(tmp)) for f in case.fragments]


# --------------------------------------------------------------------------------------
# The rows of the Markdown table, shared by the generator and the tests that compare it.

def _md(text):
  return text.replace("|", "\\|").replace("\n", " ").replace("`", "'")


def _prefix(what, kind):
  return f"| {_md(what)} | {kind} | "


def library_row(case, error):
  """The table's line for a library case that raised `error` (None: nothing raised)."""
  if error is None:
    cell = "*accepted:* no error"
  else:
    text = _md((str(error).splitlines() or [""])[0])
    if type(error) is case.error and all(f in str(error) for f in case.fragments):
      cell = f"`{text}`"
    else:
      cell = f"*unclear:* {type(error).__name__}: `{text}`"
  return f"{_prefix(case.what, case.error.__name__)}{cell} |"


def trainer_row(case, kind, message, tmp):
  """The table's line for a trainer case that ended in `kind` with `message` (stderr),
  the temporary directory `tmp` shown as TMP."""
  message = message.strip().splitlines()[-1].replace(str(tmp), "TMP")
  if kind == case.error and all(f in message for f in _fragments(case, "TMP")):
    cell = f"`{_md(message)}`"
  else:
    cell = "*accepted: not rejected yet*"
  return f"{_prefix(case.what, case.error)}{cell} |"


def _clear(row):
  """Whether a table line shows a clear error (its message cell, after the first two
  separators: `_md` escapes any "|" in the first cell)."""
  return row.split(" | ", 2)[2].startswith("`")


def summary(library_clear, trainer_clear):
  """The table's line that counts the rows, and those that get a clear error."""
  gaps = library_clear < len(LIBRARY) or trainer_clear < len(TRAINER)
  return (f"{len(LIBRARY)} library inputs, {len(TRAINER)} trainer inputs. "
          f"{library_clear} of the library's and {trainer_clear} of the trainer's get the "
          f"clear error shown"
          + ("; the others are marked *unclear* (an error that does not name the argument, "
             "what was expected and what came) or *accepted* (no error) and are tested as "
             "expected failures until fixed." if gaps else "."))


def table_sections(text):
  """The table rows of BAD_INPUTS.md: (library lines, trainer lines), headers left out."""
  library, _, trainer = text.partition("\n## Trainer")

  def rows(part):
    return [line for line in part.splitlines()
            if line.startswith("| ") and not line.startswith("| bad input |")]

  return rows(library), rows(trainer)


def assert_row_in_table(row, what):
  """`row`, the line this input gets now, is the table's line for it, to the character."""
  lines = TABLE.read_text().splitlines()
  prefix = f"| {_md(what)} | "
  now = [line for line in lines if line.startswith(prefix)]
  if row not in lines:  # pytest.fail: the table's hundred lines would bury the message
    pytest.fail(f"{TABLE.name} is out of date for {what!r} (regenerate it: python "
                f"{__file__} > {TABLE}):\n  table: {now}\n  now:   {row}")


# --------------------------------------------------------------------------------------
# The tests.

# inputs the library does not yet reject with a clear message (reported; each row fails
# strictly once it does, so that the mark is removed)
LIBRARY_GAPS = set()


@pytest.mark.parametrize(
    "case", [pytest.param(c, marks=pytest.mark.xfail(strict=True, reason="no clear error yet"))
             if c.what in LIBRARY_GAPS else c for c in LIBRARY],
    ids=[c.what for c in LIBRARY])
def test_library_bad_input(case):
  with pytest.raises(case.error) as info:
    case.call()
  message = str(info.value)
  missing = [f for f in case.fragments if f not in message]
  assert not missing, f"message {message!r} lacks {missing}"
  assert_row_in_table(library_row(case, info.value), case.what)


# flags whose bad values the trainer accepts today (reported; see the closing note)
KNOWN_GAPS = set()


@pytest.mark.parametrize(
    "case", [pytest.param(c, marks=pytest.mark.xfail(strict=True, reason="not rejected yet"))
             if c.what in KNOWN_GAPS else c for c in TRAINER],
    ids=[c.what for c in TRAINER])
def test_trainer_bad_input(case, tmp_path, capsys, monkeypatch):
  if "{data}" in case.argv and DATA_DIR is None:
    if os.environ.get("CI"):
      pytest.fail("CI must run every row: no IMDB data in $TFDS_DATA_DIR")
    pytest.skip("no IMDB data ($TFDS_DATA_DIR or ../shared/tensorflow_datasets)")
  monkeypatch.delenv("TFDS_DATA_DIR", raising=False)
  monkeypatch.chdir(tmp_path)  # where a default runs/imdb/<date-time> would go
  kind, message = run_trainer(case, tmp_path, capsys)
  assert kind == case.error, message
  assert "Traceback" not in message
  missing = [f for f in _fragments(case, tmp_path) if f not in message]
  assert not missing, f"message {message!r} lacks {missing}"
  assert not (tmp_path / "run").exists() or case.setup is not _nothing, \
      "a failed start must not create the output directory"
  assert not (tmp_path / "runs").exists(), "nor the default one"
  assert_row_in_table(trainer_row(case, kind, message, tmp_path), case.what)


def test_table_is_up_to_date():
  """BAD_INPUTS.md has one row per case, in order, with its error type, and its summary
  line counts them (each row's message is compared by that row's test)."""
  text = TABLE.read_text()
  library, trainer = table_sections(text)
  clear = []
  for rows, cases, kind in ((library, LIBRARY, lambda c: c.error.__name__),
                            (trainer, TRAINER, lambda c: c.error)):
    prefixes = [_prefix(c.what, kind(c)) for c in cases]
    assert [r[:len(p)] for r, p in zip(rows, prefixes)] == prefixes and \
        len(rows) == len(cases), f"regenerate {TABLE.name}: python {__file__} > {TABLE}"
    clear.append(sum(map(_clear, rows)))
  # a gap row is an expected failure (strict), so the table shows it unclear or accepted
  assert clear == [len(LIBRARY) - len(LIBRARY_GAPS), len(TRAINER) - len(KNOWN_GAPS)]
  if summary(*clear) not in text.splitlines():
    pytest.fail(f"the summary line of {TABLE.name} should read: {summary(*clear)}")


# --------------------------------------------------------------------------------------
# The Markdown table.

class _Stderr:
  """A stand-in for pytest's capsys: stderr into a buffer, read and emptied on demand."""

  def __init__(self):
    self.buffer = io.StringIO()

  def readouterr(self):
    err = self.buffer.getvalue()
    self.buffer.seek(0)
    self.buffer.truncate()
    return types.SimpleNamespace(err=err)


def _library_rows():
  for case in LIBRARY:
    try:
      case.call()
      error = None
    except Exception as e:  # noqa: BLE001 -- the table shows whatever happens
      error = e
    yield library_row(case, error)


def _trainer_rows(tmp_root):
  for case in TRAINER:
    tmp = pathlib.Path(tempfile.mkdtemp(dir=tmp_root))
    capture = _Stderr()
    # the trainer's progress lines go to stdout, where this table goes: keep them out
    with contextlib.redirect_stderr(capture.buffer), contextlib.redirect_stdout(io.StringIO()):
      kind, message = run_trainer(case, tmp, capture)
    yield trainer_row(case, kind, message, tmp)


def markdown(tmp_root):
  """The table, with the messages the rows actually get."""
  library, trainer = list(_library_rows()), list(_trainer_rows(tmp_root))
  lines = ["# Bad inputs and the errors they get", "",
           "Generated by `python tests/test_bad_inputs.py > tests/BAD_INPUTS.md` from the "
           "rows that `tests/test_bad_inputs.py` tests; each message names the argument, "
           "what was expected and what came.", "",
           summary(sum(map(_clear, library)), sum(map(_clear, trainer))), "",
           "## Library", "", "| bad input | error | message |", "|---|---|---|", *library,
           "", "## Trainer (`python -m examples.imdb.main ...`)", "",
           "`usage`: argparse prints the usage line and `python -m examples.imdb.main: "
           "error: ...`, exit status 2. "
           "`error`: the trainer prints `error: ...` (no traceback), exit status 2. "
           "TMP stands for the test's temporary directory.", "",
           "| bad input | error | message |", "|---|---|---|", *trainer]
  return "\n".join(lines) + "\n"


if __name__ == "__main__":
  sys.path.insert(0, str(REPO))  # the checkout, for `examples` (pytest: pythonpath = ".")
  jax.config.update("jax_numpy_dtype_promotion", "strict")
  os.environ.pop("TFDS_DATA_DIR", None)
  with tempfile.TemporaryDirectory() as root:
    print(markdown(root), end="")
