"""Time loops: how a layer runs over time (`stacked_rnn(time_loop=)`), by name or object."""

from deeprnn_jax._src.core.types import TimeLoop
from deeprnn_jax._src.loops.auto import AUTO
from deeprnn_jax._src.loops.auto import Choice
from deeprnn_jax._src.loops.auto import choices
from deeprnn_jax._src.loops.cudnn import cudnn_time_loop
from deeprnn_jax._src.loops.onednn import ONEDNN
from deeprnn_jax._src.loops.onednn import fused_layer as onednn_fused_layer
from deeprnn_jax._src.loops.onednn import onednn_layer
from deeprnn_jax._src.loops.onednn_kernel.library import status as onednn_status
from deeprnn_jax._src.loops.scan import SCAN
from deeprnn_jax._src.loops.scan import loop_layer
from deeprnn_jax._src.loops.scan import remat_chunk
from deeprnn_jax._src.loops.scan import remat_scan_layer
from deeprnn_jax._src.loops.scan import scan_layer
from deeprnn_jax._src.loops.tuning import prefers_fast
from deeprnn_jax._src.loops.tuning import prefers_hoisted

__all__ = ("AUTO", "Choice", "ONEDNN", "SCAN", "TimeLoop", "choices", "cudnn_time_loop",
           "loop_layer", "onednn_fused_layer", "onednn_layer", "onednn_status",
           "prefers_fast", "prefers_hoisted", "remat_chunk", "remat_scan_layer",
           "scan_layer")
