{{ candles('1h') }}
