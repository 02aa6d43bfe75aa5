"""The base layer: errors, the data types every stage passes on, the taxonomy, file helpers."""
