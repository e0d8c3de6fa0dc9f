"""Small local corpora for the text-pipeline tests."""

import numpy as np

WORDS = "the of and to in that he shall unto for his a lord they be is with not all thou".split()


def paragraph(rng, words: int) -> str:
    text = " ".join(rng.choice(WORDS, size=words))
    return text[0].upper() + text[1:] + ". Ünïcode ✓\nsecond line"


def write_corpus(path, num_paragraphs: int = 60, seed: int = 0) -> str:
    """A text file of blank-line separated paragraphs; returns its text."""
    rng = np.random.default_rng(seed)
    text = "\n\n".join(paragraph(rng, int(rng.integers(3, 40))) for _ in range(num_paragraphs))
    path.write_text(text, encoding="utf-8")
    return text
