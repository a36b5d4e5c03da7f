"""The conventional column names each head reads while `data.text_column` /
`data.label_column` are left at their defaults: one list per head, shared by the file
readers and the hub readers so both fall back alike. Imports nothing."""

from __future__ import annotations

WORD_NAMES = ("tokens", "words")
"""token-classification: the words of a row."""
TAG_NAMES = ("tags", "ner_tags", "labels")
"""token-classification: a tag per word."""
SOURCE_NAMES = ("source", "src", "document", "input")
"""seq2seq: the source text."""
TARGET_NAMES = ("target", "tgt", "summary", "output")
"""seq2seq: the target text."""
LM_TEXT_NAMES = ("content", "sentence")
"""masked-lm, causal-lm: the text."""
