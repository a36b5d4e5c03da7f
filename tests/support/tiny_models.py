"""Tiny real models built from configs and saved with `save_pretrained`.

Random weights, real architectures and real tokenizers built locally, so
tests exercise the same loading code as a hub download, in seconds.
"""

from __future__ import annotations

from pathlib import Path

WORDS = (
    "good great fine nice lovely happy love best excellent fun wonderful "
    "bad awful poor sad terrible hate worst boring ugly horrible angry "
    "the a movie film day food was is it this that and very so not really "
    "i you we they he she show book song place service time today"
).split()


def build_wordpiece_vocab(folder: Path) -> Path:
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    pieces = [f"##{c}" for c in letters]
    vocab = specials + sorted(set(WORDS)) + letters + pieces + list(".,!?'")
    path = folder / "vocab.txt"
    path.write_text("\n".join(dict.fromkeys(vocab)) + "\n", encoding="utf-8")
    return path


def make_tiny_bert(folder: Path, *, seed: int = 0) -> Path:
    """A 2-layer BERT (hidden 32) with a WordPiece tokenizer."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab_file = build_wordpiece_vocab(folder)
    vocab = {tok: i for i, tok in enumerate(vocab_file.read_text(encoding="utf-8").split())}
    tokenizer = BertTokenizerFast(vocab=vocab, do_lower_case=True)
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=128, type_vocab_size=2,
    )
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _word_level_tokenizer(folder: Path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "</s>", "<unk>", "<s>"]
    vocab = {t: i for i, t in enumerate(specials + sorted(set(WORDS)))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
        bos_token="<s>",
    )


def make_tiny_seq2seq(folder: Path, *, seed: int = 0) -> Path:
    """A tiny BART encoder-decoder with a word-level tokenizer."""
    import torch
    from transformers import BartConfig, BartForConditionalGeneration

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = _word_level_tokenizer(folder)
    torch.manual_seed(seed)
    config = BartConfig(
        vocab_size=len(tokenizer), d_model=32, encoder_layers=1, decoder_layers=1,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
        decoder_ffn_dim=64, max_position_embeddings=64, pad_token_id=0, eos_token_id=1,
        bos_token_id=3, decoder_start_token_id=1, forced_eos_token_id=1,
    )
    BartForConditionalGeneration(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def make_tiny_vit(folder: Path, *, seed: int = 0) -> Path:
    """A tiny ViT for 16x16 images with its image processor."""
    import torch
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    config = ViTConfig(
        image_size=16, patch_size=4, num_channels=3, hidden_size=32, num_hidden_layers=2,
        num_attention_heads=2, intermediate_size=64,
    )
    ViTModel(config).save_pretrained(folder)
    ViTImageProcessor(size={"height": 16, "width": 16}).save_pretrained(folder)
    return folder


def write_sentiment_csv(path: Path, rows: int = 120, *, seed: int = 0) -> Path:
    """A small, learnable two-class text set: the label follows the adjective."""
    import csv
    import random

    rng = random.Random(seed)
    pos = ["good", "great", "nice", "lovely", "happy", "excellent", "wonderful", "fun"]
    neg = ["bad", "awful", "poor", "sad", "terrible", "horrible", "boring", "ugly"]
    nouns = ["movie", "film", "day", "food", "show", "book", "song", "place", "service"]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        for i in range(rows):
            label = "positive" if i % 2 else "negative"
            adj = rng.choice(pos if label == "positive" else neg)
            filler = " ".join(rng.choice(["the", "very", "really", "so", "it", "was"])
                              for _ in range(rng.randint(0, 6)))
            writer.writerow([f"{filler} {rng.choice(nouns)} was {adj}".strip(), label])
    return path


def _wordpiece_tokenizer(folder: Path):
    from transformers import BertTokenizerFast

    vocab_file = build_wordpiece_vocab(folder)
    vocab = {tok: i for i, tok in enumerate(vocab_file.read_text(encoding="utf-8").split())}
    return BertTokenizerFast(vocab=vocab, do_lower_case=True)


TEXT_FAMILIES = ("bert", "roberta", "distilbert", "electra", "gpt2", "llama", "t5", "marian")
VISION_FAMILIES = ("vit", "resnet")


def make_tiny_family(family: str, folder: Path, *, seed: int = 0) -> Path:
    """A two-block model of an architecture family, saved with a tokenizer or image processor."""
    import torch
    import transformers as tf

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    if family in VISION_FAMILIES:
        if family == "vit":
            config = tf.ViTConfig(image_size=16, patch_size=4, hidden_size=32,
                                  num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=64)
            tf.ViTModel(config).save_pretrained(folder)
        else:
            config = tf.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1],
                                     layer_type="basic")
            tf.ResNetModel(config).save_pretrained(folder)
        tf.ViTImageProcessor(size={"height": 16, "width": 16}).save_pretrained(folder)
        return folder
    if family in ("t5", "marian", "llama", "gpt2"):
        tokenizer = _word_level_tokenizer(folder)
    else:
        tokenizer = _wordpiece_tokenizer(folder)
    vocab = len(tokenizer)
    small = dict(vocab_size=vocab)
    if family == "bert":
        model = tf.BertModel(tf.BertConfig(**small, hidden_size=32, num_hidden_layers=2,
                                           num_attention_heads=2, intermediate_size=64))
    elif family == "roberta":
        model = tf.RobertaModel(tf.RobertaConfig(**small, hidden_size=32, num_hidden_layers=2,
                                                 num_attention_heads=2, intermediate_size=64,
                                                 pad_token_id=0))
    elif family == "distilbert":
        model = tf.DistilBertModel(tf.DistilBertConfig(**small, dim=32, n_layers=2, n_heads=2,
                                                       hidden_dim=64))
    elif family == "electra":
        model = tf.ElectraModel(tf.ElectraConfig(**small, embedding_size=16, hidden_size=32,
                                                 num_hidden_layers=2, num_attention_heads=2,
                                                 intermediate_size=64))
    elif family == "gpt2":
        model = tf.GPT2LMHeadModel(tf.GPT2Config(**small, n_embd=32, n_layer=2, n_head=2,
                                                 n_positions=128, pad_token_id=0))
    elif family == "llama":
        model = tf.LlamaForCausalLM(tf.LlamaConfig(**small, hidden_size=32, num_hidden_layers=2,
                                                   num_attention_heads=2, num_key_value_heads=1,
                                                   intermediate_size=64, pad_token_id=0))
    elif family == "t5":
        model = tf.T5ForConditionalGeneration(tf.T5Config(
            **small, d_model=32, d_kv=16, d_ff=64, num_layers=2, num_heads=2,
            pad_token_id=0, eos_token_id=1, decoder_start_token_id=0))
    elif family == "marian":
        model = tf.MarianMTModel(tf.MarianConfig(
            **small, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
            decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
            max_position_embeddings=64, pad_token_id=0, eos_token_id=1,
            decoder_start_token_id=0))
    else:
        raise ValueError(family)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
