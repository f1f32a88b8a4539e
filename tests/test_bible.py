"""The embedded Bible: its chapters and verses, and the held-out chapters that the
corpus and the tasks built from it share."""
from primer_mtf.data import bible
from primer_mtf.data import splits


def test_chapters_and_verses_in_canonical_order():
  chapters = bible.chapters()
  assert len(chapters) == 1189
  assert (chapters[0].book, chapters[0].number) == ("Genesis", 1)
  assert chapters[0].verses[0] == bible.Verse(
      "Genesis", "Genesis 1:1",
      "In the beginning God created the heaven and the earth.")
  assert (chapters[-1].book, chapters[-1].number) == ("Revelation", 22)
  assert sum(len(c.verses) for c in chapters) == 31103
  assert len({c.book for c in chapters}) == 66
  assert bible.documents()[0] == " ".join(v.text for v in chapters[0].verses)


def test_split_verses_are_the_verses_of_the_corpus_split_chapters():
  for split in splits.SPLITS:
    held = splits.split(bible.chapters(), split)
    assert bible.split_verses(split) == [v for c in held for v in c.verses]
  train = {v.citation for v in bible.split_verses("train")}
  validation = {v.citation for v in bible.split_verses("validation")}
  assert not train & validation and len(train) + len(validation) == 31103
  assert "Genesis 20:1" in validation          # chapter index 19: held out


def test_book_names_in_words():
  assert bible.book_in_words("1 Samuel") == "First Samuel"
  assert bible.book_in_words("3 John") == "Third John"
  assert bible.book_in_words("Song of Solomon") == "Song of Solomon"
