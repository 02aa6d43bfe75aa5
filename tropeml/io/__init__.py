"""Step 1, read: fics (text, AO3 HTML/EPUB, saved pages), corpora, label and answer files."""
