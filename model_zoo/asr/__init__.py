"""Speech recognition: log-mel frames in, text out, on the zoo's encoder-decoder machinery."""
