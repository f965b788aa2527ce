"""Examples: timm's ResNet-18/34/50 with SE, ECA, CECA or CBAM blocks in PyTorch, Flax Linen and Keras, and porting
trained PyTorch weights to the other two with ``tf_impl.load_torch_state_dict`` and ``flax_impl.linen.load_torch_state_dict``.

Run from the repository root: ``python -m examples.port_weights``.
"""
