"""Silences the deprecation warnings our dependencies raise about their own code, so a command's
output starts with what it does. Each entry is one warning, matched by its text and by the module
it is raised in, so the same text from anywhere else (our code included) still shows; torch's
"no CUDA runtime" log line from building the CPU kernel is dropped the same way. Installed when the
package is imported: before our modules import nerfstudio in the divff-* commands; when the plugin
loads under ns-train and ns-viewer (warnings nerfstudio raised while importing itself have shown by
then).
"""

from __future__ import annotations

import logging
import warnings
from typing import List, Tuple, Type

KNOWN: List[Tuple[Type[Warning], str, str]] = [
    # torch 2.x on nerfstudio 1.1.5's camera indexing, five lines per rendered camera
    (UserWarning, r"Using a non-tuple sequence for multidimensional indexing", r"nerfstudio\.cameras\.cameras"),
    (FutureWarning, r"`torch\.cuda\.amp\.custom_(fwd|bwd)\(args\.\.\.\)` is deprecated", r"nerfstudio\.field_components\.activations"),
    (FutureWarning, r"`torch\.cuda\.amp\.GradScaler\(args\.\.\.\)` is deprecated", r"nerfstudio\.engine\.trainer"),
    (UserWarning, r"Converting a tensor with requires_grad=True to a scalar", r"nerfstudio\.utils\.writer"),
    # open_clip / timm scripting their layers
    (FutureWarning, r"`torch\.jit\.script` is deprecated", r"torch\.jit\._script"),
    # nerfstudio importing torchmetrics' old paths
    (FutureWarning, r"Importing `\w+` from `torchmetrics\.functional` was deprecated", r"torchmetrics\.utilities\.prints"),
]


class _NoCudaRuntimeLine(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "No CUDA runtime is found" not in record.getMessage()


def install() -> None:
    for category, message, module in KNOWN:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)
    logger = logging.getLogger("torch.utils.cpp_extension")
    if not any(isinstance(f, _NoCudaRuntimeLine) for f in logger.filters):
        logger.addFilter(_NoCudaRuntimeLine())
