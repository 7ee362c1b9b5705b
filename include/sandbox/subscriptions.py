"""Which open connections subscribe to which served stream: the index every publisher reads.

Why an index. Every tick publishes its trades (and checks the book tickers), and the periodic loops
queue dozens of events a second; asking each connection for its streams at every event walks every
subscription of every connection, per event. Subscriptions change rarely (a connection opens,
closes or is closing, or sends ``SUBSCRIBE``/``UNSUBSCRIBE``), so the index is marked stale when they
do and rebuilt at the next read: between changes a read is a dictionary look-up.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Generic, Protocol, TypeVar

from include.sandbox.streams import Stream


class Subscriber(Protocol):
    """What the index reads of a connection."""

    @property
    def closing(self) -> bool: ...

    def subscriptions(self) -> Mapping[str, Stream]: ...


S = TypeVar("S", bound=Subscriber)


class SubscriptionIndex(Generic[S]):
    """Stream name -> the open connections subscribed to it, over a live collection of connections.

    Whoever changes what the index reads (the connections themselves, their streams, their closing
    flag) calls ``changed``. A rebuild makes new objects rather than editing the old ones, so a
    publisher that is iterating a list of subscribers while one of them is dropped is not disturbed,
    and a reader can tell a rebuilt ``streams()`` from the one it saw by identity.
    """

    def __init__(self, connections: Collection[S]) -> None:
        self._connections = connections
        self._stale = True
        self._streams: dict[str, Stream] = {}
        self._subscribers: dict[str, tuple[S, ...]] = {}

    def changed(self) -> None:
        self._stale = True

    def streams(self) -> Mapping[str, Stream]:
        """Every served stream some open connection subscribes to, by name. Not to be changed."""
        if self._stale:
            self._rebuild()
        return self._streams

    def subscribers(self, name: str) -> Sequence[S]:
        """The open connections subscribed to ``name`` (none that is closing)."""
        if self._stale:
            self._rebuild()
        return self._subscribers.get(name, ())

    def _rebuild(self) -> None:
        # Fresh before reading, not after: a change made meanwhile (a test's thread may read while
        # the server's loop changes a connection) leaves it stale for the next read.
        self._stale = False
        streams: dict[str, Stream] = {}
        subscribers: dict[str, list[S]] = {}
        for conn in self._connections:
            if conn.closing:
                continue
            for name, stream in conn.subscriptions().items():
                streams[name] = stream
                subscribers.setdefault(name, []).append(conn)
        self._streams = streams
        self._subscribers = {name: tuple(conns) for name, conns in subscribers.items()}
