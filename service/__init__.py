"""initsvc: initialized neural-network weights over HTTP, bit-identical to ``torch.nn.init``.

This module holds only the version: the client-only distribution (``clients/python``) ships it,
so importing ``service.client`` changes nothing in the caller's process. The server's entry points
(``service.app``, ``service.cli``) pin ``MKL_CBWR`` themselves before torch loads.
"""

__version__ = "0.1.0"
