"""divff-nerfstudio: NeuralDiff + DIV-FF as a nerfstudio plugin."""

from divff_nerfstudio.utils import legacy_modules

legacy_modules.install()
