"""Tokenizers: one token per residue or per character, one text form `12/5=79`, no guessing."""

from __future__ import annotations

import string

import pytest

from grok.config import TaskConfig
from grok.data import modular_equations
from grok.tokenizer import build_tokenizer, char_tokenizer, number_tokenizer


def test_number_tokenizer_reads_each_residue_as_one_token():
    tok = number_tokenizer(97)
    assert tok.tokens("12/5=79") == ["12", "/", "5", "=", "79"]
    # residues are tokens 0..p-1, then + - / =, then pad, bos, eos
    assert tok.encode("12/5=79") == [12, 99, 5, 100, 79]
    assert (tok.pad_id, tok.bos_id, tok.eos_id) == (101, 102, 103)
    assert tok.vocab_size == 97 + 4 + 3


def test_number_tokenizer_ignores_spaces_between_tokens():
    tok = number_tokenizer(97)
    assert tok.encode(" 12 / 5 = ") == tok.encode("12/5=")


@pytest.mark.parametrize("op", ["+", "-", "/"])
def test_number_tokenizer_round_trips_every_equation(op):
    tok = number_tokenizer(11)
    for a, b, c in modular_equations(op, 11):
        text = f"{a}{op}{b}={c}"
        ids = tok.encode(text)
        assert len(ids) == 5
        assert tok.decode(ids) == text


def test_char_tokenizer_reads_each_character_as_one_token():
    tok = char_tokenizer()
    assert tok.tokens("12/5=79") == ["1", "2", "/", "5", "=", "7", "9"]
    assert len(tok.encode("12/5=79")) == 7
    assert tok.vocab_size == 96 + 3


@pytest.mark.parametrize(
    "text", ["12/5=79", "I love machine learning", string.printable[:95] + "\t", ""]
)
def test_char_tokenizer_round_trips_printable_text(text):
    tok = char_tokenizer()
    assert tok.decode(tok.encode(text)) == text


def test_both_tokenizers_share_the_text_form():
    number, char = number_tokenizer(97), char_tokenizer()
    assert number.decode(number.encode("12/5=79")) == char.decode(char.encode("12/5=79"))


def test_decode_skips_pad_and_bos_and_stops_at_eos():
    tok = char_tokenizer()
    ids = [tok.bos_id, *tok.encode("ab"), tok.pad_id, *tok.encode("c"), tok.eos_id]
    ids += tok.encode("zz")
    assert tok.decode(ids) == "abc"
    assert tok.decode(ids, stop_at_eos=False) == "abczz"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("97+1=", "'97' is not in the vocabulary"),  # 97 is not a residue mod 97
        ("1*2=", "cannot tokenize '1\\*2=' at position 1"),
        ("a+b=", "cannot tokenize 'a\\+b=' at position 0"),
        ("1.5", "cannot tokenize '1.5' at position 1"),
    ],
)
def test_number_tokenizer_refuses_unknown_tokens(text, message):
    with pytest.raises(ValueError, match=message):
        number_tokenizer(97).encode(text)


@pytest.mark.parametrize("text", ["café", "日本", "a\x00b"])
def test_char_tokenizer_refuses_characters_outside_printable_ascii(text):
    with pytest.raises(ValueError, match="is not in the vocabulary"):
        char_tokenizer().encode(text)


def test_the_config_chooses_the_tokenizer():
    assert build_tokenizer(TaskConfig(p=7, tokenizer="number")).vocab_size == 7 + 4 + 3
    assert not build_tokenizer(TaskConfig(tokenizer="char")).number_level
