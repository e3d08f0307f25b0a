"""The engine: pure torch (and numpy), no HTTP, no Pydantic, no asyncio.

Importing this package loads nothing; ``fans`` and ``gains`` are plain Python (re-exported from
``service.formulas``, which the torch-free portable client shares), the other modules import
torch themselves.
"""
