"""Clients of the init service: InitClient, AsyncInitClient and the torch-free portable-v1 generator.

    from service.client import InitClient
    with InitClient() as client:                      # $INITSVC_URL, else http://127.0.0.1:8000
        w = client.tensor([256, 784], "kaiming_uniform", a=5 ** 0.5, seed=0).tensor

Importing this package loads neither torch nor numpy: each is imported by the call that returns
one (``as_numpy=True`` needs numpy only). ``service.client.portable`` makes portable-v1 weights
offline, with numpy.
"""

from service.client._answers import Download, Result, Summary, TensorSet
from service.client.aio import AsyncInitClient
from service.client.errors import (
    Busy,
    InitServiceError,
    InvalidRecipe,
    MalformedAnswer,
    TooLarge,
    Unauthorized,
    Unavailable,
)
from service.client.sync import InitClient

__all__ = [
    "AsyncInitClient",
    "Busy",
    "Download",
    "InitClient",
    "InitServiceError",
    "InvalidRecipe",
    "MalformedAnswer",
    "Result",
    "Summary",
    "TensorSet",
    "TooLarge",
    "Unauthorized",
    "Unavailable",
]
