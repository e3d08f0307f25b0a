"""portable-v1 weights made offline, without the service and without torch (numpy only).

The same bits the service returns for ``rng: "portable-v1"``, from the same code it runs::

    from service.client.portable import generate
    w = generate({"scheme": "kaiming_uniform"}, [256, 784], seed=0)        # float32 ndarray
    shard = generate({"scheme": "normal", "std": 0.02}, [50257, 768], seed=0, tid=3,
                     dtype="bfloat16", slice=[(0, 12565), None])          # uint16 bf16 bits

A re-export of ``service.portable``; the algorithm is written up in ``docs/portable-v1.md``.
"""

from service.portable import *  # noqa: F403 - the torch-free numpy core, as it is
from service.portable import __all__  # noqa: F401
