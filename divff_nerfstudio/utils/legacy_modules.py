"""Module paths of the flat layout (before the subpackages), still importable.

A run's config.yml names the classes it was built from by module path (`_target`, the config
dataclasses), and ns-viewer / ns-render / resuming import them by that name. So that runs trained
before the move keep loading, each old path resolves to the module that holds those classes now.
Only paths a config.yml can name are kept.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from types import ModuleType
from typing import Dict, Optional, Sequence

MOVED: Dict[str, str] = {
    "divff_nerfstudio.trainer": "divff_nerfstudio.engine.trainer",
    "divff_nerfstudio.divff_datamanager": "divff_nerfstudio.data.divff_datamanager",
    "divff_nerfstudio.divff_model": "divff_nerfstudio.model.divff_model",
    "divff_nerfstudio.clip_encoder": "divff_nerfstudio.language.clip_encoder",
    "divff_nerfstudio.feature_targets": "divff_nerfstudio.language.pyramid_targets",
    "divff_nerfstudio.video_targets": "divff_nerfstudio.language.video_targets",
    "divff_nerfstudio.dino_targets": "divff_nerfstudio.language.dino_targets",
}
"""Old module path -> the module that now holds its classes (under the same names)."""


class _MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports an old path as its new module: the very same module object, so classes compare equal."""

    def find_spec(self, fullname: str, path: Optional[Sequence[str]], target: Optional[ModuleType] = None):
        if fullname not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec) -> None:
        return None  # a placeholder; exec_module puts the real module in its place

    def exec_module(self, module: ModuleType) -> None:
        # the import system reads sys.modules again after exec_module, so the import returns this
        sys.modules[module.__name__] = importlib.import_module(MOVED[module.__name__])


def install() -> None:
    """Make the old paths importable (idempotent; done when divff_nerfstudio is imported)."""
    if not any(isinstance(finder, _MovedModuleFinder) for finder in sys.meta_path):
        sys.meta_path.append(_MovedModuleFinder())
