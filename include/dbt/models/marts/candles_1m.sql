{{ candles('1m') }}
