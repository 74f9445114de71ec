"""One description per endpoint, a method of both clients: blocking on `Client`, a coroutine on `AsyncClient`.

An endpoint is written once, as a function that describes its request (a `Call`), and
decorated:

    @endpoint
    def get_task(self, task_id: str) -> Call[TaskStatus]:
        return Call("GET", f"/task-status/{seg(task_id)}", model(TaskStatus))

On a `Client`, `client.get_task(id)` sends it and returns a `TaskStatus`; on an `AsyncClient`,
`await client.get_task(id)` does. The type checker sees the same: the decorators' `__get__`
is overloaded on the client's class, and `ParamSpec` keeps the parameters. This replaces the
two hand-written copies of every method (httpx keeps two; unasync generates one from the
other); what really differs between the clients, the transport, the streams and the
sleeps, stays written out in `_client.py` and `_async_client.py`.

- `endpoint`: the parsed answer.
- `submission`: the `202` wrapped in the client's task handle (`TaskHandle`/`AsyncTaskHandle`).
- `paged`: an iterator (sync or async) over every item, following `next_cursor`.

Options shared by several endpoints are one TypedDict (`_call.py`), taken as
`**options: Unpack[TaskOptions]`: the type checker checks each keyword, and the method's
signature (`help()`, `inspect`) spells them out as keyword-only parameters.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine, Generator, Iterator
from typing import (
    TYPE_CHECKING,
    Any,
    Concatenate,
    Generic,
    ParamSpec,
    TypeVar,
    Unpack,
    cast,
    get_args,
    get_origin,
    get_type_hints,
    overload,
)

from smartapp._call import Call, Pages
from smartapp._models import TaskAccepted

if TYPE_CHECKING:
    from smartapp._async_client import AsyncClient
    from smartapp._client import Client
    from smartapp._tasks import AsyncTaskHandle, TaskHandle

P = ParamSpec("P")
T = TypeVar("T")
Item = TypeVar("Item")  # an item of a listing
B = TypeVar("B")  # what the described function returns


def _signature(describe: Callable[..., Any]) -> tuple[inspect.Signature, bool]:
    """What `inspect.signature(client.method)` shows: the parameters after `self`, with
    `**options: Unpack[SomeOptions]` (a TypedDict, see `_call.py`) spelled out as the keyword-only
    parameters it names, each None by default; and whether there were such options."""
    sig = inspect.signature(describe)
    params = list(sig.parameters.values())[1:]
    last = params[-1] if params else None
    typed: Any = None
    if last is not None and last.kind is inspect.Parameter.VAR_KEYWORD:
        unpacked = get_type_hints(describe)[last.name]
        typed = get_args(unpacked)[0] if get_origin(unpacked) is Unpack else None
    if typed is not None:
        params[-1:] = [
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=hint)
            for name, hint in get_type_hints(typed).items()
        ]
    return sig.replace(parameters=params, return_annotation=inspect.Signature.empty), typed is not None


class _Described(Generic[P, B]):
    """A function of (client, *args) that describes a request, as a method of the client."""

    def __init__(self, describe: Callable[Concatenate[Any, P], B]) -> None:
        functools.update_wrapper(cast(Any, self), describe)
        self.signature, options = _signature(describe)
        self.describe = describe
        if options:
            signature = self.signature

            @functools.wraps(describe)
            def checked(client: Any, /, *args: Any, **kwargs: Any) -> B:
                # `**options` takes any keyword: refuse one it does not name, as Python would.
                signature.bind(*args, **kwargs)
                return describe(client, *args, **kwargs)

            self.describe = checked

    def _method(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        functools.update_wrapper(fn, self.describe)
        fn.__signature__ = self.signature  # type: ignore[attr-defined]
        return fn

    def _sending(self, client: Any, after: Callable[[Any, Any], Any]) -> Callable[..., Any]:
        """The method: describe the request, send it with the client, pass the answer to `after`."""
        describe = self.describe
        if client.is_async:

            async def amethod(*args: Any, **kwargs: Any) -> Any:
                return after(client, await client._send(describe(client, *args, **kwargs)))

            return self._method(amethod)

        def method(*args: Any, **kwargs: Any) -> Any:
            return after(client, client._send(describe(client, *args, **kwargs)))

        return self._method(method)


def _as_is(_: Any, answer: Any) -> Any:
    return answer


def _handle(client: Any, answer: TaskAccepted) -> Any:
    return client._handle(answer.task_id, answer)


class endpoint(_Described[P, Call[T]]):  # lowercase: a decorator, like property
    @overload
    def __get__(self, client: None, owner: type[Any]) -> endpoint[P, T]: ...
    @overload
    def __get__(self, client: Client, owner: type[Any]) -> Callable[P, T]: ...
    @overload
    def __get__(self, client: AsyncClient, owner: type[Any]) -> Callable[P, Coroutine[Any, Any, T]]: ...
    def __get__(self, client: Any, owner: type[Any]) -> Any:
        return self if client is None else self._sending(client, _as_is)


class submission(_Described[P, Call[TaskAccepted]]):
    @overload
    def __get__(self, client: None, owner: type[Any]) -> submission[P]: ...
    @overload
    def __get__(self, client: Client, owner: type[Any]) -> Callable[P, TaskHandle]: ...
    @overload
    def __get__(
        self, client: AsyncClient, owner: type[Any]
    ) -> Callable[P, Coroutine[Any, Any, AsyncTaskHandle]]: ...
    def __get__(self, client: Any, owner: type[Any]) -> Any:
        return self if client is None else self._sending(client, _handle)


class paged(_Described[P, Pages[Item]]):
    @overload
    def __get__(self, client: None, owner: type[Any]) -> paged[P, Item]: ...
    @overload
    def __get__(self, client: Client, owner: type[Any]) -> Callable[P, Generator[Item, None, None]]: ...
    @overload
    def __get__(self, client: AsyncClient, owner: type[Any]) -> Callable[P, AsyncGenerator[Item, None]]: ...
    def __get__(self, client: Any, owner: type[Any]) -> Any:
        if client is None:
            return self
        describe = self.describe
        if client.is_async:

            async def aitems(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
                pages: Pages[Any] = describe(client, *args, **kwargs)
                cursor: str | None = None
                while True:
                    items, cursor = await client._send(pages.page(cursor))
                    for item in items:
                        yield item
                    if cursor is None:
                        return

            return self._method(aitems)

        def items(*args: Any, **kwargs: Any) -> Iterator[Any]:
            pages: Pages[Any] = describe(client, *args, **kwargs)
            cursor: str | None = None
            while True:
                found, cursor = client._send(pages.page(cursor))
                yield from found
                if cursor is None:
                    return

        return self._method(items)
