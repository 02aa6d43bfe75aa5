"""Steps 3-5, embed, score, roll up: encoders, the classifier and its training and evaluation."""
