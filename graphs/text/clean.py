r"""Text cleaning as in TextGCN (`Yao et al., AAAI 2019 <https://arxiv.org/abs/1809.05679>`_).

TextGCN tokenises every document with Kim's (2014) ``clean_str`` recipe, lower-cases it, removes English
stop words and drops words seen fewer than 5 times in the whole corpus (train + test). For the ``mr``
sentence-polarity data it keeps every word and removes no stop words. The regular expressions below are
written for this project and have the same effect as ``clean_str``:

1. every character other than ``A-Z a-z 0-9 ( ) , ! ? ' `` ` `` becomes a space;
2. the contractions ``'s 've n't 're 'd 'll`` are split off the word before them (case-sensitively, before
   lower-casing, as in the original);
3. ``, ! ( ) ?`` become tokens of their own;
4. runs of whitespace collapse, the ends are stripped and the text is lower-cased.

The original writes brackets as the two-character tokens ``\(`` and ``\)`` (an artefact of its replacement
strings); here they are ``(`` and ``)``. Only the spelling of the token differs.

Stop words: TextGCN used NLTK's English list (179 words). This module uses scikit-learn's
:data:`sklearn.feature_extraction.text.ENGLISH_STOP_WORDS` (318 words) so that no corpus download is needed;
the vocabularies therefore differ by a few hundred function words.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

__all__ = [
    "ENGLISH_STOP_WORDS",
    "clean_str",
    "tokenize",
    "clean_corpus",
    "cleaning_defaults",
]

_NOT_KEPT = re.compile(r"[^A-Za-z0-9(),!?'`]")
_CONTRACTION = re.compile(r"('s|'ve|n't|'re|'d|'ll)")
_PUNCT = re.compile(r"([,!()?])")
_SPACES = re.compile(r"\s+")


def clean_str(text: str) -> str:
    r"""Normalises one document the way Kim's ``clean_str`` does (see the module docstring).

    Args:
        text (str): The raw document.

    Returns:
        str: The cleaned, lower-cased document with tokens separated by single spaces.
    """
    text = _NOT_KEPT.sub(" ", text)
    text = _CONTRACTION.sub(r" \1", text)
    text = _PUNCT.sub(r" \1 ", text)
    return _SPACES.sub(" ", text).strip().lower()


def tokenize(text: str) -> list[str]:
    r"""Splits a document into TextGCN tokens: :func:`clean_str` then whitespace split."""
    return clean_str(text).split()


def cleaning_defaults(dataset_name: str) -> dict[str, int | bool]:
    r"""The TextGCN cleaning options for a benchmark.

    ``mr`` keeps every word (``min_count=1``, no stop-word removal); every other dataset drops stop words
    and words seen fewer than 5 times in the corpus.

    Args:
        dataset_name (str): The dataset name, e.g. ``"mr"``, ``"R8"`` (case-insensitive).

    Returns:
        dict: Keyword arguments for :func:`clean_corpus` (``min_count``, ``remove_stopwords``).
    """
    if dataset_name.lower() == "mr":
        return {"min_count": 1, "remove_stopwords": False}
    return {"min_count": 5, "remove_stopwords": True}


def clean_corpus(
    texts: Iterable[str],
    min_count: int = 5,
    remove_stopwords: bool = True,
    stop_words: Iterable[str] | None = None,
) -> list[list[str]]:
    r"""Tokenises a corpus and filters its words as TextGCN does.

    Word counts are taken over the whole corpus after :func:`tokenize` and before stop-word removal; a
    token is kept if it is not a stop word (when ``remove_stopwords``) and occurs at least ``min_count``
    times. Pass train and test documents together (the TextGCN graph is transductive).

    Args:
        texts (Iterable[str]): The raw documents.
        min_count (int, optional): Drop words with fewer occurrences in the corpus. (default: :obj:`5`)
        remove_stopwords (bool, optional): Drop English stop words. (default: :obj:`True`)
        stop_words (Iterable[str], optional): The stop-word list; scikit-learn's
            :data:`ENGLISH_STOP_WORDS` if :obj:`None`. (default: :obj:`None`)

    Returns:
        list[list[str]]: One token list per document, in input order (possibly empty).
    """
    if min_count < 1:
        raise ValueError(f"Expected 'min_count' to be at least 1 (got {min_count})")
    docs = [tokenize(text) for text in texts]
    stops: frozenset[str] = frozenset()
    if remove_stopwords:
        stops = frozenset(ENGLISH_STOP_WORDS if stop_words is None else stop_words)
    if min_count == 1 and not stops:
        return docs
    counts = Counter(word for doc in docs for word in doc)
    keep = {word for word, count in counts.items() if count >= min_count and word not in stops}
    return [[word for word in doc if word in keep] for doc in docs]
