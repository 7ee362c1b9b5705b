{{ candles('5m') }}
