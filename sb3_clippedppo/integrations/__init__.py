"""What connects ClippedPPO to other tools: the RL Zoo (:mod:`.zoo`, and the import hook :mod:`.zoo_hook`, which uses the
standard library only) and ONNX export (:mod:`.export`). The algorithm never imports this folder."""
