"""Pruning: mask maths, the layer-by-layer engine, structured pruning and the quantized-weight format."""
