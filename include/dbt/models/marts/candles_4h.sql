{{ candles('4h') }}
