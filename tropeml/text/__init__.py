"""Step 2, split: a work's text into passages that fit the encoder, with names masked."""
