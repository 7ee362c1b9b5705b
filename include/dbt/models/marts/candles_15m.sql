{{ candles('15m') }}
