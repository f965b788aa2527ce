"""Examples: a small ResNet with SE, CBAM and ECA blocks in PyTorch, Flax and Keras, and porting its weights.

Run from the repository root: ``python -m examples.port_weights``.
"""
