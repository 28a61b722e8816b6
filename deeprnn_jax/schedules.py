"""Schedules: how a group of equal layers runs (`stacked_rnn(schedule=)`)."""

from deeprnn_jax._src.core.types import Schedule
from deeprnn_jax._src.schedules.layer import LAYER
from deeprnn_jax._src.schedules.pipeline import idle_fraction
from deeprnn_jax._src.schedules.pipeline import pipeline
from deeprnn_jax._src.schedules.wavefront import WAVEFRONT

__all__ = ("LAYER", "Schedule", "WAVEFRONT", "idle_fraction", "pipeline")
