"""The synthetic order book on its own: its shape around the last price, and its updates.

What a client of the book relies on: bids below the last price and asks above it, whole ticks and
steps, a full depth, and updates that, applied to an earlier snapshot, give the later snapshot.
"""

from __future__ import annotations

import random

from include.sandbox.book import DEPTH, OrderBook
from include.sandbox.exchange import Exchange
from include.sandbox.symbols import spec_for
from tests.support.exchange import sandbox_config

BTC = spec_for("BTCUSDT")
TICK = BTC.tick_units


def walk(seed: int, steps: int, start: int, jumps: dict[int, int]) -> list[int]:
    """A random walk of whole ticks, with jumps of ``jumps[step]`` ticks at chosen steps."""
    rng = random.Random(seed)
    prices, price = [], start
    for step in range(steps):
        price += (rng.choice((-3, -1, 0, 1, 3)) + jumps.get(step, 0)) * TICK
        prices.append(price)
    return prices


def apply_to(local: tuple[dict[int, int], dict[int, int]], bids: dict[int, int], asks: dict[int, int]) -> None:
    """Binance's rule for a diff: set each level's quantity, and remove it where the quantity is 0."""
    for side, changes in zip(local, (bids, asks), strict=True):
        for price, qty in changes.items():
            if qty:
                side[price] = qty
            else:
                side.pop(price, None)


def assert_shape(book: OrderBook, last_price: int) -> None:
    _, bids, asks = book.snapshot(DEPTH)
    assert len(bids) == len(asks) == DEPTH
    assert bids[0][0] < last_price < asks[0][0]
    assert bids[0][0] == last_price - TICK  # the ticks next to it
    assert asks[0][0] == last_price + TICK
    assert [price for price, _ in bids] == [bids[0][0] - i * TICK for i in range(DEPTH)]  # contiguous
    assert [price for price, _ in asks] == [asks[0][0] + i * TICK for i in range(DEPTH)]
    for price, qty in bids + asks:
        assert price % TICK == 0
        assert qty > 0
        assert qty % BTC.step_units == 0
    assert book.top() == (*bids[0], *asks[0])


def test_the_book_stands_around_the_last_price_at_full_depth():
    book = OrderBook(BTC, 42, BTC.start_price_units, 0)
    assert_shape(book, BTC.start_price_units)
    prices = walk(1, 300, BTC.start_price_units, {100: 9000, 200: -40})
    for step, price in enumerate(prices):
        book.apply(price, step)
        if step % 50 == 0 or step in (100, 200):
            assert_shape(book, price)


def test_applying_every_update_to_a_snapshot_gives_the_later_snapshot():
    book = OrderBook(BTC, 7, BTC.start_price_units, 0)
    first_id, bids, asks = book.snapshot(DEPTH)
    local = (dict(bids), dict(asks))
    # Small moves, a jump past the whole depth (a rebuild), and moves after it.
    prices = walk(2, 400, BTC.start_price_units, {150: DEPTH + 300, 300: -2 * DEPTH})
    for step, price in enumerate(prices):
        update = book.apply(price, step)
        assert update.update_id == first_id + step + 1
        apply_to(local, update.bids, update.asks)
    last_id, bids, asks = book.snapshot(DEPTH)
    assert last_id == first_id + len(prices)
    assert local == (dict(bids), dict(asks))
    quantities = {qty for _, qty in bids[:10]}
    assert len(quantities) > 1  # not one quantity everywhere


def test_merged_changes_are_the_updates_in_order():
    book = OrderBook(BTC, 3, BTC.start_price_units, 0)
    start_id, bids, asks = book.snapshot(DEPTH)
    local = (dict(bids), dict(asks))
    for step, price in enumerate(walk(3, 60, BTC.start_price_units, {})):
        book.apply(price, step)
        if step % 7 == 0:
            changes = book.changes(start_id)
            assert changes is not None
            assert (changes.first_id, changes.last_id) == (start_id + 1, book.update_id)
            apply_to(local, changes.bids, changes.asks)
            start_id = changes.last_id
    changes = book.changes(start_id)
    if changes is not None:
        apply_to(local, changes.bids, changes.asks)
    assert book.changes(book.update_id) is None
    _, bids, asks = book.snapshot(DEPTH)
    assert local == (dict(bids), dict(asks))


def test_a_book_made_before_any_trade_is_empty_and_its_first_update_fills_it():
    book = OrderBook(BTC, 42, None, 0)
    assert book.snapshot(5) == (0, [], [])
    assert book.top() is None
    update = book.apply(BTC.start_price_units, 1)
    assert update.update_id == 1
    local: tuple[dict[int, int], dict[int, int]] = ({}, {})
    apply_to(local, update.bids, update.asks)
    _, bids, asks = book.snapshot(DEPTH)
    assert local == (dict(bids), dict(asks))
    assert_shape(book, BTC.start_price_units)


def test_bids_stop_above_zero():
    book = OrderBook(BTC, 42, 4 * TICK, 0)
    _, bids, asks = book.snapshot(DEPTH)
    assert [price for price, _ in bids] == [3 * TICK, 2 * TICK, TICK]
    assert len(asks) == DEPTH
    update = book.apply(TICK, 1)  # at the lowest tick: no bid at all
    assert book.snapshot(DEPTH)[1] == []
    assert update.bids == {3 * TICK: 0, 2 * TICK: 0, TICK: 0}


def test_the_exchange_makes_a_book_on_first_use_and_moves_it_with_every_tick():
    clock = [1_800_000_000_000_000]
    exchange = Exchange(sandbox_config(rate=50.0, history_seconds=60), clock_us=lambda: clock[0])
    assert exchange.books == {}  # nobody asked: no book
    book = exchange.book("BTCUSDT")
    assert exchange.book("BTCUSDT") is book
    assert set(exchange.books) == {"BTCUSDT"}
    store = exchange.sources["BTCUSDT"].store
    first_id = book.update_id
    for _ in range(20):
        clock[0] += 500_000
        exchange.tick()
        bid, _, ask, _ = book.top() or (0, 0, 0, 0)
        assert bid < store.prices[-1] < ask
    assert book.update_id > first_id  # 10 s at 50 trades/s: it moved
    assert set(exchange.books) == {"BTCUSDT"}  # ETHUSDT traded too, and still has no book
