"""The engine: pure torch (and numpy), no HTTP, no Pydantic, no asyncio.

Importing this package loads nothing; ``fans`` and ``gains`` are plain Python (they are shared
with the torch-free portable client), the other modules import torch themselves.
"""
