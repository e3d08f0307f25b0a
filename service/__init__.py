"""initsvc: initialized neural-network weights over HTTP, bit-identical to ``torch.nn.init``."""

__version__ = "0.1.0"
