"""Step 6, serve: the tagger, the audit, labelling sessions and Ray Data corpora."""
