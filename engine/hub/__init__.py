"""The Hugging Face hub and its local cache, through `huggingface_hub` only (never
`torch.hub`): search, details, downloads with progress and cancel, cache listing,
verification and deletion. Depends on `engine.core` alone.
"""
