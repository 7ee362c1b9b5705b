{{ candles('1d') }}
