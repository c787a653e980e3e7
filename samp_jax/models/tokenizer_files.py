"""The names of a tokenizer's files in a model folder, in one place (the SentencePiece models'
are `sentencepiece_tokenizer.SENTENCEPIECE_FILES`)."""

TOKENIZER_FILE = "tokenizer.json"
"""HF's fast tokenizer: what `Tokenizer` reads, builds when a folder lacks it, and saves."""
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
"""The tokenizer's options, special tokens and added tokens."""
SPECIAL_TOKENS_FILE = "special_tokens_map.json"
ADDED_TOKENS_FILE = "added_tokens.json"
VOCAB_TXT = "vocab.txt"
"""A WordPiece vocabulary, a token per line (BERT, DistilBERT, ELECTRA, MPNet)."""
VOCAB_JSON = "vocab.json"
"""A byte-level BPE vocabulary (RoBERTa), with `MERGES_TXT`."""
MERGES_TXT = "merges.txt"
