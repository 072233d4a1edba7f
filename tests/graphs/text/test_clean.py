import pytest

from graphs.text import ENGLISH_STOP_WORDS, clean_corpus, clean_str, cleaning_defaults, tokenize


def test_clean_str_matches_kim_recipe():
    assert clean_str("Don't stop") == "do n't stop"
    assert clean_str("It's (really) good, isn't it?!") == "it 's ( really ) good , is n't it ? !"
    assert clean_str("We'll've we'd they're") == "we 'll 've we 'd they 're"
    assert clean_str("  café\t3.5%\n ok  ") == "caf 3 5 ok"
    assert clean_str("`quoted' text") == "`quoted' text"


def test_contractions_split_before_lower_casing():
    # The original splits contractions case-sensitively, then lower-cases: "DON'T" stays one token.
    assert tokenize("DON'T Don't") == ["don't", "do", "n't"]


def test_clean_corpus_drops_stop_words_and_rare_words():
    texts = ["The cat sat.", "the cat ran", "a dog"]
    assert clean_corpus(texts, min_count=2) == [["cat"], ["cat"], []]
    assert clean_corpus(texts, min_count=2, remove_stopwords=False) == [["the", "cat"], ["the", "cat"], []]
    assert clean_corpus(texts, min_count=1, remove_stopwords=False) == [
        ["the", "cat", "sat"],
        ["the", "cat", "ran"],
        ["a", "dog"],
    ]
    assert clean_corpus(texts, min_count=1, stop_words={"cat"}) == [
        ["the", "sat"],
        ["the", "ran"],
        ["a", "dog"],
    ]


def test_counts_include_stop_words_and_whole_corpus():
    # "dog" occurs once per document but 3 times in the corpus: kept with min_count=3.
    texts = ["dog one", "dog two", "dog three"]
    assert clean_corpus(texts, min_count=3) == [["dog"], ["dog"], ["dog"]]


def test_cleaning_defaults():
    assert cleaning_defaults("mr") == {"min_count": 1, "remove_stopwords": False}
    assert cleaning_defaults("MR") == {"min_count": 1, "remove_stopwords": False}
    for name in ["R8", "R52", "ohsumed", "20ng"]:
        assert cleaning_defaults(name) == {"min_count": 5, "remove_stopwords": True}


def test_stop_word_list_is_sklearn():
    assert "the" in ENGLISH_STOP_WORDS and "cat" not in ENGLISH_STOP_WORDS


def test_min_count_validation():
    with pytest.raises(ValueError, match="Expected 'min_count'"):
        clean_corpus(["a"], min_count=0)
