"""divff-nerfstudio: NeuralDiff + DIV-FF as a nerfstudio plugin."""

from divff_nerfstudio.utils import known_warnings, legacy_modules

known_warnings.install()  # first, so warnings raised while our modules import nerfstudio are caught too
legacy_modules.install()
