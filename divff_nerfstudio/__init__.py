"""divff-nerfstudio: NeuralDiff + DIV-FF as a nerfstudio plugin."""
