"""Models: resolving and loading backbones and tokenizers (`loading`), the heads that
fit a config (`heads`), freezing plans and LoRA (`freeze`), token-length limits
(`lengths`) and the exported model folder (`export`). Built on `core`, `hub` and `data`.
"""
