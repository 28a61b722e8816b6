"""Gradient diagnostics: how large gradients are per layer and per time step."""

from deeprnn_jax._src.training.diagnostics import GradientNorms
from deeprnn_jax._src.training.diagnostics import param_gradient_norms
from deeprnn_jax._src.training.diagnostics import state_gradient_norms

__all__ = ("GradientNorms", "param_gradient_norms", "state_gradient_norms")
