"""Text handling compatible with AttnGAN's released encoders.

Tokens: lower case, runs of word characters (NLTK's `RegexpTokenizer(r'\\w+')`),
non-ASCII characters stripped, empty tokens dropped; the pair U+FFFD U+FFFD
becomes a space first, as in AttnGAN's `load_captions`.

Vocabulary: id 0 is `<end>`, used only as padding (no start, unknown or end
tokens inside captions). Word ids must be those of the `captions.pickle` the
text encoder was trained with: a rebuilt vocabulary numbers words differently
(reference section 2), so a mismatch is refused rather than guessed.
"""

import dataclasses
import os
import re
import warnings
from typing import Iterable, Sequence

import numpy as np

from mirrorgan_jax.data import safe_pickle

PAD_ID = 0
PAD_WORD = "<end>"
_WORD = re.compile(r"\w+")


class VocabularyError(ValueError):
  """A vocabulary that does not fit the data or the weights it is used with."""


def _typed_and_ascii(text: str) -> list[tuple[str, str]]:
  """(word as typed, lower-cased; its ASCII form, as the official tokenizer keeps it)."""
  text = text.replace("\ufffd\ufffd", " ").lower()
  return [(t, t.encode("ascii", "ignore").decode("ascii")) for t in _WORD.findall(text)]


def tokenize(text: str) -> list[str]:
  return [a for _, a in _typed_and_ascii(text) if a]


@dataclasses.dataclass(frozen=True)
class Vocabulary:
  """words[i] is the word with id i; words[0] is the padding word."""
  words: tuple[str, ...]

  def __post_init__(self):
    if len(self.words) < 2:
      raise VocabularyError("a vocabulary needs the padding word and at least one word")
    index = {}
    for i, w in enumerate(self.words):
      if w in index:
        raise VocabularyError(f"word {w!r} has two ids, {index[w]} and {i}")
      index[w] = i
    object.__setattr__(self, "_index", index)

  def __len__(self) -> int:
    return len(self.words)

  def __contains__(self, word: str) -> bool:
    return word in self._index

  def id(self, word: str) -> int:
    return self._index[word]

  @classmethod
  def build(cls, tokenized: Iterable[Sequence[str]]) -> "Vocabulary":
    """Every word of `tokenized`, numbered from 1 in order of first appearance
    (AttnGAN's `build_dictionary` under Python >= 3.7, count threshold 0)."""
    seen = {}
    for tokens in tokenized:
      for t in tokens:
        seen.setdefault(t, None)
    seen.pop(PAD_WORD, None)
    return cls((PAD_WORD, *seen))

  @classmethod
  def from_ixtoword(cls, ixtoword, wordtoix=None, source: str = "vocabulary") -> "Vocabulary":
    """From AttnGAN's `ixtoword` dict (or a list), checked against `wordtoix`."""
    if isinstance(ixtoword, dict):
      ids = sorted(ixtoword)
      if ids != list(range(len(ids))):
        raise VocabularyError(f"{source}: word ids are not 0..{len(ids) - 1}")
      words = [ixtoword[i] for i in ids]
    else:
      words = list(ixtoword)
    if not all(isinstance(w, str) for w in words):
      raise VocabularyError(f"{source}: words must be strings")
    vocab = cls(tuple(words))
    if wordtoix is not None and any(wordtoix.get(w) != i for i, w in enumerate(words)):
      raise VocabularyError(f"{source}: ixtoword and wordtoix disagree")
    return vocab

  def ixtoword(self) -> dict[int, str]:
    return dict(enumerate(self.words))

  def wordtoix(self) -> dict[str, int]:
    return dict(self._index)

  def encode(self, tokens: Sequence[str]) -> tuple[list[int], list[str]]:
    """Ids of the known tokens, and the unknown ones (dropped)."""
    ids, unknown = [], []
    for t in tokens:
      i = self._index.get(t, PAD_ID)  # the padding word is never a caption word
      if i == PAD_ID:
        unknown.append(t)
      else:
        ids.append(i)
    return ids, unknown

  def decode(self, ids: Iterable[int]) -> str:
    """The words of `ids` up to the first padding id."""
    out = []
    for i in ids:
      if int(i) == PAD_ID:
        break
      out.append(self.words[int(i)])
    return " ".join(out)

  def check_size(self, rows: int, what: str) -> None:
    """Refuses a vocabulary whose size differs from an embedding table's rows."""
    if rows != len(self):
      raise VocabularyError(
          f"vocabulary size mismatch: the vocabulary has {len(self)} words but "
          f"{what} has {rows} embedding rows; use the captions.pickle the "
          "text encoder was trained with (CUB 5450 words, COCO 27297)")


@dataclasses.dataclass(frozen=True)
class CaptionsPickle:
  """AttnGAN's captions.pickle: [train_captions, test_captions, ixtoword, wordtoix].
  Captions are id lists, image-major: caption k of image i at i * per_image + k."""
  train: list[list[int]]
  test: list[list[int]]
  vocab: Vocabulary


def load_captions_pickle(path: str | os.PathLike) -> CaptionsPickle:
  path = os.fspath(path)
  obj = safe_pickle.load(path)
  if not (isinstance(obj, (list, tuple)) and len(obj) == 4):
    raise VocabularyError(
        f"{path}: expected [train_captions, test_captions, ixtoword, wordtoix]")
  train, test, ixtoword, wordtoix = obj
  if not isinstance(ixtoword, (dict, list)) or not isinstance(wordtoix, dict):
    raise VocabularyError(f"{path}: ixtoword must be a dict and wordtoix a dict")
  vocab = Vocabulary.from_ixtoword(ixtoword, wordtoix, source=path)
  for name, caps in (("train", train), ("test", test)):
    for n, cap in enumerate(caps):
      if not cap:
        raise VocabularyError(f"{path}: {name} caption {n} is empty")
      if not all(isinstance(i, int) and 0 < i < len(vocab) for i in cap):
        raise VocabularyError(
            f"{path}: {name} caption {n} has ids outside 1..{len(vocab) - 1}: {cap}")
  return CaptionsPickle([list(c) for c in train], [list(c) for c in test], vocab)


def save_captions_pickle(path: str | os.PathLike, captions: CaptionsPickle) -> None:
  safe_pickle.dump([captions.train, captions.test, captions.vocab.ixtoword(),
                    captions.vocab.wordtoix()], path)


def encode_caption(ids: Sequence[int], words_num: int,
                   rng: np.random.Generator | None = None) -> tuple[np.ndarray, int]:
  """A caption as `words_num` ids padded with 0, and its length (<= words_num).

  Longer captions keep a random ordered subset of their words when `rng` is
  given (training, as AttnGAN's `get_caption`), else their first words."""
  ids = np.asarray(ids, np.int32)
  if ids.ndim != 1 or len(ids) == 0:
    raise ValueError(f"a caption must be a non-empty sequence of word ids, got {ids!r}")
  if len(ids) > words_num:
    if rng is None:
      ids = ids[:words_num]
    else:
      ids = ids[np.sort(rng.permutation(len(ids))[:words_num])]
  out = np.zeros(words_num, np.int32)
  out[:len(ids)] = ids
  return out, len(ids)


def encode_texts(vocab: Vocabulary, texts: Sequence[str], words_num: int,
                 names: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
  """User sentences to (ids (N, words_num), lengths (N,)) for sampling.

  Unknown words are dropped with a warning naming them; words beyond
  `words_num` are cut with a warning; a sentence with no known word is an
  error that quotes it. `names[n]` says where caption n came from (default
  "caption n"), e.g. "captions.txt:4"."""
  ids = np.zeros((len(texts), words_num), np.int32)
  lens = np.zeros(len(texts), np.int32)
  for n, text in enumerate(texts):
    where = names[n] if names is not None else f"caption {n}"
    pairs = _typed_and_ascii(text)
    stripped = [f"{t!r} -> {a!r}" for t, a in pairs if t != a]
    if stripped:  # the official tokenizer keeps ASCII only, inside words too
      warnings.warn(f"{where} {text!r}: non-ASCII letters dropped: {', '.join(stripped)}",
                    stacklevel=2)
    typed = {a: t for t, a in pairs}
    known, unknown = vocab.encode([a for _, a in pairs if a])
    if unknown:
      warnings.warn(f"{where} {text!r}: unknown words dropped: "
                    f"{', '.join(sorted({typed.get(w, w) for w in unknown}))}", stacklevel=2)
    if not known:
      raise ValueError(f"{where} {text!r} has no word of the vocabulary")
    if len(known) > words_num:
      warnings.warn(f"{where} {text!r}: {len(known)} known words, only the "
                    f"first {words_num} are used", stacklevel=2)
    ids[n], lens[n] = encode_caption(known, words_num)
  return ids, lens
