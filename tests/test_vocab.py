"""Text handling: tokenizer, vocabulary, caption encoding, user text, and the
restricted unpickler for AttnGAN's pickles."""

import pickle
import warnings

import numpy as np
import pytest

from mirrorgan_jax.data import safe_pickle
from mirrorgan_jax.data.vocab import (CaptionsPickle, Vocabulary, VocabularyError,
                                      encode_caption, encode_texts, load_captions_pickle,
                                      save_captions_pickle, tokenize)
from tests.attngan_trees import py2_pickle


def test_tokenize_like_attngan():
  assert tokenize("This bird's wings are GREY, with a 2-tone beak.") == [
      "this", "bird", "s", "wings", "are", "grey", "with", "a", "2", "tone", "beak"]
  # Non-ASCII letters are word characters, then stripped; all-non-ASCII tokens vanish.
  assert tokenize("café naïve ünï") == ["caf", "nave", "n"]
  assert tokenize("über") == ["ber"]
  assert tokenize("ñ é") == []
  assert tokenize("red\ufffd\ufffdbird") == ["red", "bird"]
  assert tokenize("snake_case under_score") == ["snake_case", "under_score"]
  assert tokenize("  ,.;  ") == []


def test_vocabulary_build_and_lookup():
  v = Vocabulary.build([["a", "red", "bird"], ["a", "blue", "bird"]])
  assert v.words == ("<end>", "a", "red", "bird", "blue")
  assert len(v) == 5 and v.id("blue") == 4 and "red" in v
  assert v.encode(["a", "green", "bird", "<end>"]) == ([1, 3], ["green", "<end>"])
  assert v.decode([1, 2, 3, 0, 4]) == "a red bird"
  with pytest.raises(VocabularyError, match="two ids"):
    Vocabulary(("<end>", "a", "a"))


def test_vocabulary_from_attngan_dicts():
  v = Vocabulary.from_ixtoword({0: "<end>", 2: "b", 1: "a"}, {"<end>": 0, "a": 1, "b": 2})
  assert v.words == ("<end>", "a", "b")
  with pytest.raises(VocabularyError, match="not 0..2"):
    Vocabulary.from_ixtoword({0: "<end>", 1: "a", 3: "b"}, source="x.pickle")
  with pytest.raises(VocabularyError, match="disagree"):
    Vocabulary.from_ixtoword({0: "<end>", 1: "a"}, {"<end>": 0, "a": 2})


def test_vocabulary_size_mismatch_names_both_sizes():
  v = Vocabulary(("<end>",) + tuple(f"w{i}" for i in range(5452)))
  with pytest.raises(VocabularyError, match=r"5453 words but text_encoder200.pth has 5450"):
    v.check_size(5450, "text_encoder200.pth")
  v.check_size(5453, "x")


def test_encode_caption_eval_keeps_first_words_and_pads():
  ids, n = encode_caption([5, 6, 7], 5)
  assert ids.tolist() == [5, 6, 7, 0, 0] and n == 3 and ids.dtype == np.int32
  ids, n = encode_caption(list(range(1, 31)), 18)
  assert ids.tolist() == list(range(1, 19)) and n == 18
  with pytest.raises(ValueError, match="non-empty"):
    encode_caption([], 5)


def test_encode_caption_train_keeps_a_random_ordered_subset():
  caption = list(range(1, 26))
  seen = set()
  for seed in range(50):
    ids, n = encode_caption(caption, 18, np.random.default_rng(seed))
    assert n == 18
    kept = ids.tolist()
    assert kept == sorted(kept) and len(set(kept)) == 18 and set(kept) <= set(caption)
    seen.add(tuple(kept))
  assert len(seen) > 40  # random, not the first 18
  # Short captions are untouched even with a generator.
  ids, n = encode_caption([3, 1, 2], 18, np.random.default_rng(0))
  assert ids[:4].tolist() == [3, 1, 2, 0] and n == 3


def test_user_text_unknown_words_warn_and_empty_caption_errors():
  v = Vocabulary.build([["a", "red", "bird"]])
  with pytest.warns(UserWarning, match=r"unknown words dropped: purple, tiny"):
    ids, lens = encode_texts(v, ["A tiny PURPLE bird!", "a red bird"], 4)
  assert ids.tolist() == [[1, 3, 0, 0], [1, 2, 3, 0]] and lens.tolist() == [2, 3]
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    with pytest.raises(ValueError, match=r"'zebra stripes!' has no word of the vocabulary"):
      encode_texts(v, ["a bird", "zebra stripes!"], 4)
  with pytest.raises(ValueError, match=r"caption 0 '' has no word"):
    encode_texts(v, [""], 4)
  with pytest.warns(UserWarning, match="only the first 2"):
    encode_texts(v, ["a red bird"], 2)


def test_non_ascii_letters_are_named_as_typed():
  """The official tokenizer drops non-ASCII letters inside words ("rëd" is
  "rd"); the warning quotes the word as the user typed it."""
  v = Vocabulary.build([["a", "red", "bird"]])
  with pytest.warns(UserWarning) as record:
    ids, _ = encode_texts(v, ["a rëd bïrd"], 4)
  messages = [str(w.message) for w in record]
  assert any("non-ASCII letters dropped: 'rëd' -> 'rd', 'bïrd' -> 'brd'" in m for m in messages)
  assert any("unknown words dropped: bïrd, rëd" in m for m in messages)
  assert ids.tolist() == [[1, 0, 0, 0]]


def test_python2_pickle_loads_with_latin1(tmp_path):
  path = tmp_path / "captions.pickle"
  obj = [[[1, 2], [2]], [[1]], {0: "<end>", 1: "a", 2: "bird"}, {"<end>": 0, "a": 1, "bird": 2}]
  path.write_bytes(py2_pickle(obj))
  assert safe_pickle.load(path) == obj
  caps = load_captions_pickle(path)
  assert caps.train == [[1, 2], [2]] and caps.vocab.words == ("<end>", "a", "bird")
  # Python 2 str bytes beyond ASCII come back as latin-1 characters.
  (tmp_path / "k.pickle").write_bytes(py2_pickle(["caf\xe9", 70000, (1, True)]))
  assert safe_pickle.load(tmp_path / "k.pickle") == ["caf\xe9", 70000, (1, True)]


def test_captions_pickle_round_trip_and_checks(tmp_path):
  v = Vocabulary(("<end>", "a", "bird"))
  save_captions_pickle(tmp_path / "c.pickle", CaptionsPickle([[1, 2]], [[2]], v))
  back = load_captions_pickle(tmp_path / "c.pickle")
  assert (back.train, back.test, back.vocab) == ([[1, 2]], [[2]], v)
  (tmp_path / "bad.pickle").write_bytes(py2_pickle([[[1, 7]], [], {0: "<end>", 1: "a"},
                                                    {"<end>": 0, "a": 1}]))
  with pytest.raises(VocabularyError, match=r"bad.pickle: train caption 0 has ids outside"):
    load_captions_pickle(tmp_path / "bad.pickle")
  (tmp_path / "three.pickle").write_bytes(py2_pickle([[], [], {}]))
  with pytest.raises(VocabularyError, match="three.pickle: expected"):
    load_captions_pickle(tmp_path / "three.pickle")


class _Exploit:

  def __reduce__(self):
    return (print, ("this must never run",))


@pytest.mark.parametrize("payload,what", [
    (pickle.dumps(_Exploit(), protocol=2), r"__builtin__\.print"),
    (b"cos\nsystem\n(S'echo pwned'\ntR.", "os.system"),
    (pickle.dumps(np.arange(3), protocol=2), "numpy"),
    (pickle.dumps({1, 2}, protocol=4), "set"),
])
def test_restricted_unpickler_refuses_code(tmp_path, capsys, payload, what):
  path = tmp_path / "class_info.pickle"
  path.write_bytes(payload)
  with pytest.raises(safe_pickle.UnsafePickleError, match=f"class_info.pickle.*{what}"):
    safe_pickle.load(path)
  assert "never run" not in capsys.readouterr().out


def test_truncated_and_missing_pickles_name_the_file(tmp_path):
  path = tmp_path / "filenames.pickle"
  path.write_bytes(py2_pickle(["a", "b"])[:-3])
  with pytest.raises(ValueError, match="filenames.pickle: not a readable pickle"):
    safe_pickle.load(path)
  with pytest.raises(FileNotFoundError, match="nope.pickle"):
    safe_pickle.load(tmp_path / "nope.pickle")
