"""The service's exception tree. No HTTP codes here: ``api/errors.py`` maps them.

    InitServiceError(Exception)
    ├── RecipeError(ValueError)         a recipe the shape rule or torch would reject; .problems
    ├── LimitExceeded                   over a size limit; .limit, .value, .env_var
    ├── DeviceUnavailable               the device exists in the recipe but not on this server
    └── ServiceBusy                     try again later; .retry_after
        ├── QueueFull                   the device's queue is full
        ├── DeviceOutOfMemory           the device ran out of memory making the tensor
        ├── WorkerDown                  the device's worker died, hung or is stopping
        └── ShuttingDown                the server is draining for exit
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class InitServiceError(Exception):
    """Base of every error the service raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a recipe: where (``loc``, as in FastAPI) and what."""

    loc: tuple[str | int, ...]
    msg: str
    type: str = "value_error"


class RecipeError(InitServiceError, ValueError):
    """The recipe is well-formed but cannot be made (shape rule, parameter rule, torch limit)."""

    def __init__(self, problems: Sequence[Problem]):
        self.problems = list(problems)
        super().__init__("; ".join(f"{'.'.join(map(str, p.loc))}: {p.msg}" for p in self.problems))

    @classmethod
    def at(cls, loc: tuple[str | int, ...], msg: str, type: str = "value_error") -> RecipeError:
        return cls([Problem(loc, msg, type)])


class LimitExceeded(InitServiceError):
    """A size limit refused the request before anything was allocated."""

    def __init__(self, what: str, value: int, limit: int, env_var: str):
        self.what, self.value, self.limit, self.env_var = what, value, limit, env_var
        super().__init__(f"{what}; {env_var} is {limit}")


class DeviceUnavailable(InitServiceError):
    def __init__(self, requested: str, available: Sequence[str]):
        self.requested, self.available = requested, list(available)
        super().__init__(
            f"device {requested!r} is not available on this server; available: {', '.join(self.available)}"
        )


class ServiceBusy(InitServiceError):
    """The request could not be served now; ``retry_after`` seconds is a fair wait."""

    def __init__(self, message: str, retry_after: int = 1):
        self.retry_after = retry_after
        super().__init__(message)


class QueueFull(ServiceBusy):
    pass


class DeviceOutOfMemory(ServiceBusy):
    pass


class WorkerDown(ServiceBusy):
    pass


class ShuttingDown(ServiceBusy):
    pass
