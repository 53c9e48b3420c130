"""The dataset engine on real files written here: formats, encodings, refusals, splits, tokens."""

from __future__ import annotations

import codecs
import json
import re
import struct
import zipfile
from pathlib import Path

import pytest

from projects.engine.datasets import (
    PREVIEW_CHARS,
    ArchiveRefused,
    BinaryFileError,
    DatasetFormatError,
    DatasetLimits,
    DatasetOptions,
    DatasetOptionsError,
    HuggingFaceTokenizer,
    LengthHistogram,
    TokenizerError,
    count_tokens,
    detect_dataset_format,
    detect_encoding,
    inspect_source,
    load_tokenizer,
    normalise,
    read_documents,
    split_counts,
    split_mask,
    split_of,
)
from projects.engine.datasets.options import DEFAULT_LIMITS


def read(path: Path, options: DatasetOptions, tmp_path: Path, limits: DatasetLimits = DEFAULT_LIMITS):
    """Normalise ``path``; returns (result, the normalised records)."""
    out = tmp_path / "out.jsonl"
    result = normalise(path, options, out, limits)
    return result, [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]


def texts(records) -> list[str]:
    return [r["text"] for r in records]


def write_jsonl(path: Path, records) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


# --- Formats -------------------------------------------------------------------------------


def test_detect_format_from_the_name():
    assert [detect_dataset_format(n) for n in ("a.TXT", "b.jsonl", "c.ndjson", "d.csv", "e.tsv", "f.zip", "g.bin")] == [
        "txt",
        "jsonl",
        "jsonl",
        "csv",
        "csv",
        "zip",
        None,
    ]


def test_txt_lines_paragraphs_and_whole_file(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_bytes(b"first line\r\n\r\nsecond paragraph\nstill second\n\n\n   \nthird\n")
    result, records = read(path, DatasetOptions("txt"), tmp_path)
    assert texts(records) == ["first line", "second paragraph", "still second", "third"]
    assert [r["source"] for r in records] == ["line 1", "line 3", "line 4", "line 8"]
    assert [r["id"] for r in records] == [0, 1, 2, 3]
    assert result.skipped == 4 and result.encoding == "utf-8"
    _, records = read(path, DatasetOptions("txt", unit="paragraph"), tmp_path)
    assert texts(records) == ["first line", "second paragraph\nstill second", "third"]
    _, records = read(path, DatasetOptions("txt", unit="file"), tmp_path)
    assert texts(records) == ["first line\n\nsecond paragraph\nstill second\n\n\n   \nthird"]


def test_jsonl_text_field_and_template(tmp_path):
    path = write_jsonl(
        tmp_path / "qa.jsonl",
        [
            {"question": "What is X?", "answer": "X is Y.", "body": "plain"},
            {"question": "How many?", "answer": 3, "body": "more"},
        ],
    )
    _, records = read(path, DatasetOptions("jsonl", text_field="body"), tmp_path)
    assert texts(records) == ["plain", "more"]
    _, records = read(path, DatasetOptions("jsonl", template="Question: {question}\nAnswer: {answer}"), tmp_path)
    assert texts(records) == ["Question: What is X?\nAnswer: X is Y.", "Question: How many?\nAnswer: 3"]


def test_jsonl_problems_name_their_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "ok"}\n\n{"text": "fine"}\n{"txt": "typo"}\n', encoding="utf-8")
    with pytest.raises(DatasetFormatError, match=r"line 4 has no field “text”; its fields are: txt"):
        read(path, DatasetOptions("jsonl"), tmp_path)
    path.write_text('{"text": "ok"}\n{"text": "unterminated}\n', encoding="utf-8")
    with pytest.raises(DatasetFormatError, match=r"line 2 is not valid JSON"):
        read(path, DatasetOptions("jsonl"), tmp_path)
    path.write_text('{"text": "ok"}\n["a", "list"]\n', encoding="utf-8")
    with pytest.raises(DatasetFormatError, match=r"line 2 is a JSON list, not an object"):
        read(path, DatasetOptions("jsonl"), tmp_path)
    path.write_text('{"text": {"nested": 1}}\n', encoding="utf-8")
    with pytest.raises(DatasetFormatError, match=r"line 1: the field “text” is a JSON object, not text"):
        read(path, DatasetOptions("jsonl"), tmp_path)


def test_a_field_missing_from_the_first_records_is_an_options_error(tmp_path):
    path = write_jsonl(tmp_path / "qa.jsonl", [{"question": "q", "answer": "a"}])
    with pytest.raises(DatasetOptionsError, match=r"has no field “text”; its fields are: question, answer"):
        inspect_source(path, DatasetOptions("jsonl"))
    inspection = inspect_source(path, DatasetOptions("jsonl", template="{question} {answer}"))
    assert inspection.fields == ["question", "answer"] and inspection.preview[0]["text"] == "q a"


def test_templates_take_only_plain_field_names():
    for template in ("{x.__class__}", "{0}", "{}", "{q!r}", "{q:>10}", "no field at all", "{unclosed"):
        with pytest.raises(DatasetOptionsError):
            DatasetOptions("jsonl", template=template)
    assert DatasetOptions("jsonl", template="{{literal}} {q}").template == "{{literal}} {q}"


def test_options_must_fit_the_format():
    with pytest.raises(DatasetOptionsError, match="“column” is for CSV"):
        DatasetOptions("jsonl", column="text")
    with pytest.raises(DatasetOptionsError, match="either a text field or a template"):
        DatasetOptions("jsonl", text_field="a", template="{b}")
    with pytest.raises(DatasetOptionsError, match="Prompt pairs are read from JSON Lines"):
        DatasetOptions("csv", role="prompt_pairs")
    with pytest.raises(DatasetOptionsError, match="Unknown option"):
        DatasetOptions.from_dict("jsonl", "domain", {"text_feild": "x"})


def test_csv_column_default_template_and_quoted_newlines(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text('id,Text,lang\n1,"Hello, ""world""",en\n2,"two\nlines",en\n\n3,third,fr\n', encoding="utf-8")
    _, records = read(path, DatasetOptions("csv"), tmp_path)  # a column called text (any case)
    assert texts(records) == ['Hello, "world"', "two\nlines", "third"]
    assert [r["source"] for r in records] == ["line 2", "line 4", "line 6"]
    _, records = read(path, DatasetOptions("csv", column="lang"), tmp_path)
    assert texts(records) == ["en", "en", "fr"]
    _, records = read(path, DatasetOptions("csv", template="[{lang}] {Text}"), tmp_path)
    assert texts(records)[2] == "[fr] third"
    with pytest.raises(DatasetOptionsError, match="has no column “body”; its columns are: id, Text, lang"):
        inspect_source(path, DatasetOptions("csv", column="body"))
    tsv = tmp_path / "data.tsv"
    tsv.write_text("a\tb\nx, with comma\ty\n", encoding="utf-8")
    _, records = read(tsv, DatasetOptions("csv", column="a"), tmp_path)
    assert texts(records) == ["x, with comma"]
    several = tmp_path / "several.csv"
    several.write_text("a,b\n1,2\n", encoding="utf-8")
    with pytest.raises(DatasetOptionsError, match="choose the column"):
        inspect_source(several, DatasetOptions("csv"))


def test_zip_of_text_files(tmp_path):
    path = tmp_path / "corpus.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("docs/b.txt", "second file\n")
        archive.writestr("docs/a.txt", "first file\nwith two lines")
        archive.writestr("docs/", "")
        archive.writestr("__MACOSX/docs/._a.txt", b"\x00\x05\x16\x07 resource fork")
        archive.writestr("docs/.DS_Store", b"\x00\x00\x00\x01Bud1")
        archive.writestr("docs/c.txt", "caf\xe9 au lait".encode("cp1252"))
    result, records = read(path, DatasetOptions("zip"), tmp_path)
    assert texts(records) == ["first file\nwith two lines", "second file", "café au lait"]
    assert [r["source"] for r in records] == ["docs/a.txt", "docs/b.txt", "docs/c.txt"]
    assert result.files == 3 and "cp1252 (1 file)" in result.encoding and "utf-8 (2 files)" in result.encoding
    _, records = read(path, DatasetOptions("zip", unit="line"), tmp_path)
    assert texts(records) == ["first file", "with two lines", "second file", "café au lait"]
    assert records[1]["source"] == "docs/a.txt line 2"


# --- Encodings --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "encoding,data,expected",
    [
        ("utf-8", "naïve café — ok\n".encode(), "utf-8"),
        ("utf-8 with BOM", codecs.BOM_UTF8 + "naïve café\n".encode(), "utf-8-sig"),
        ("utf-16 LE BOM", codecs.BOM_UTF16_LE + "naïve café\n".encode("utf-16-le"), "utf-16"),
        ("utf-16 BE BOM", codecs.BOM_UTF16_BE + "naïve café\n".encode("utf-16-be"), "utf-16"),
        ("cp1252", "naïve café – “quoted”\n".encode("cp1252"), "cp1252"),
    ],
)
def test_encoding_detection(tmp_path, encoding, data, expected):
    path = tmp_path / "text.txt"
    path.write_bytes(data)
    inspection = inspect_source(path, DatasetOptions("txt"))
    assert inspection.encoding == expected
    assert inspection.preview[0]["text"].startswith("naïve café")


def test_binary_input_is_refused_with_where_the_nul_is(tmp_path):
    path = tmp_path / "image.txt"
    path.write_bytes(b"\x89PNG\r\n\x1a\nIHDR\x00\x00\x00\x10")
    with pytest.raises(
        BinaryFileError,
        match=r"looks like a binary file \(it contains NUL bytes at byte 12\): upload UTF-8 text, JSONL or CSV",
    ):
        inspect_source(path, DatasetOptions("txt"))
    path.write_bytes(bytes(range(1, 32)) * 50)  # no NUL, but nothing like text
    with pytest.raises(BinaryFileError, match="control characters"):
        inspect_source(path, DatasetOptions("txt"))
    path.write_bytes("utf-16 without a mark".encode("utf-16-le"))
    with pytest.raises(BinaryFileError, match="UTF-16 text needs a byte-order mark"):
        inspect_source(path, DatasetOptions("txt"))
    with pytest.raises(BinaryFileError, match="not UTF-8 text.*Windows-1252"):
        detect_encoding(b"abc\x81\x8d\x8f\x90\x9d", "x")


def test_invalid_utf8_after_the_sniffed_head_names_its_line(tmp_path):
    path = tmp_path / "late.txt"
    path.write_bytes(b"plain ascii line\n" * 5000 + b"caf\xe9\n")  # 85 kB of ASCII, then Latin-1
    with pytest.raises(DatasetFormatError, match=r"line 5001 is not valid UTF-8 .*byte 0xe9 at byte 85003"):
        read(path, DatasetOptions("txt"), tmp_path)


def test_a_compressed_file_uploaded_as_text_is_refused(tmp_path):
    path = tmp_path / "data.txt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("a.txt", "x")
    with pytest.raises(DatasetOptionsError, match="is a zip archive, not TXT text: choose the format “zip”"):
        inspect_source(path, DatasetOptions("txt"))
    path.write_bytes(b"\x1f\x8b\x08\x00" + b"rest")
    with pytest.raises(DatasetFormatError, match="is a gzip file, not text"):
        inspect_source(path, DatasetOptions("txt"))


# --- Limits -----------------------------------------------------------------------------------


def test_a_line_longer_than_the_document_limit_is_refused_with_its_number(tmp_path):
    path = tmp_path / "long.txt"
    path.write_text("short\nshort\n" + "x" * 101 + "\nshort\n", encoding="utf-8")
    limits = DatasetLimits(max_document_chars=100)
    with pytest.raises(
        DatasetFormatError, match=r"line 3 is longer than 100 characters \(DATASET_MAX_DOCUMENT_CHARS\)"
    ):
        read(path, DatasetOptions("txt"), tmp_path, limits)
    jsonl = write_jsonl(tmp_path / "long.jsonl", [{"text": "ok"}, {"text": "y" * 101}])
    with pytest.raises(DatasetFormatError, match=r"line 2 holds a document of 101 characters"):
        read(jsonl, DatasetOptions("jsonl"), tmp_path, limits)
    exactly = tmp_path / "exact.txt"
    exactly.write_text("z" * 100, encoding="utf-8")
    assert read(exactly, DatasetOptions("txt"), tmp_path, limits)[0].documents == 1


def test_empty_datasets_are_refused(tmp_path):
    path = tmp_path / "blank.txt"
    path.write_text("\n   \n\t\n", encoding="utf-8")
    with pytest.raises(DatasetFormatError, match=r"holds no documents \(3 empty documents left out\)"):
        inspect_source(path, DatasetOptions("txt"))
    with pytest.raises(DatasetFormatError, match="holds no documents"):
        read(path, DatasetOptions("txt"), tmp_path)
    empty = write_jsonl(tmp_path / "empty.jsonl", [{"text": ""}, {"text": "  "}])
    with pytest.raises(DatasetFormatError, match="holds no documents"):
        read(empty, DatasetOptions("jsonl"), tmp_path)


def test_the_synchronous_look_is_bounded(tmp_path, monkeypatch):
    from projects.engine.datasets import inspection

    monkeypatch.setattr(inspection, "INSPECT_BYTES", 32 * 1024)
    path = tmp_path / "sparse.csv"
    path.write_bytes(b"text\n" + b"\n" * (128 * 1024) + b"late document\n")
    inspection = inspect_source(path, DatasetOptions("csv"))  # stops after 32 KiB of blank rows: no verdict yet
    assert inspection.preview == []
    result, records = read(path, DatasetOptions("csv"), tmp_path)  # the job reads it all
    assert texts(records) == ["late document"] and records[0]["source"] == f"line {128 * 1024 + 2}"
    archive = tmp_path / "blank-members.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as out:
        for i in range(40):
            out.writestr(f"{i:02d}.txt", "\n" * 2_000)
        out.writestr("zz.txt", "the only text")
    assert inspect_source(archive, DatasetOptions("zip")).preview == []
    assert texts(read(archive, DatasetOptions("zip"), tmp_path)[1]) == ["the only text"]


def write_zeros_zip(path: Path, size: int, declare: int | None = None) -> Path:
    """A zip holding ``size`` bytes of "0" text; with ``declare``, its headers lie about the size."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("zeros.txt", b"0" * size)
    if declare is not None:
        data = bytearray(path.read_bytes())
        struct.pack_into("<I", data, 22, declare)  # local header: uncompressed size
        central = data.rfind(b"PK\x01\x02")
        struct.pack_into("<I", data, central + 24, declare)  # central directory: uncompressed size
        path.write_bytes(bytes(data))
    return path


def test_zip_bomb_declared_size_is_refused_before_inflating(tmp_path):
    path = write_zeros_zip(tmp_path / "bomb.zip", 50 * 1024 * 1024)
    assert path.stat().st_size < 200_000
    limits = DatasetLimits(max_uncompressed_bytes=1024 * 1024)
    with pytest.raises(
        ArchiveRefused, match=r"declares 52,428,800 bytes of uncompressed data, more than the limit of 1,048,576"
    ):
        inspect_source(path, DatasetOptions("zip"), limits)


def test_zip_bomb_with_a_lying_directory_stops_at_the_cap(tmp_path):
    path = write_zeros_zip(tmp_path / "liar.zip", 50 * 1024 * 1024, declare=1000)
    limits = DatasetLimits(max_uncompressed_bytes=1024 * 1024, max_document_chars=100 * 1024 * 1024)
    with pytest.raises(
        ArchiveRefused, match=r"inflates past the limit of 1,048,576 bytes .* declares 1,000 bytes in all"
    ):
        read(path, DatasetOptions("zip"), tmp_path, limits)
    small_liar = write_zeros_zip(tmp_path / "small-liar.zip", 5000, declare=1000)
    with pytest.raises(ArchiveRefused, match=r"holds 5,000 bytes but the archive's directory says 1,000"):
        read(small_liar, DatasetOptions("zip"), tmp_path)


def test_too_many_files_nested_archives_and_escaping_paths_are_refused(tmp_path):
    def make(name: str, entries) -> Path:
        path = tmp_path / name
        with zipfile.ZipFile(path, "w") as archive:
            for entry, data in entries:
                archive.writestr(entry, data)
        return path

    many = make("many.zip", [(f"{i}.txt", "x") for i in range(5)])
    with pytest.raises(ArchiveRefused, match=r"has 5 entries, more than the limit of 3 \(DATASET_MAX_FILES\)"):
        inspect_source(many, DatasetOptions("zip"), DatasetLimits(max_files=3))
    inner = tmp_path / "inner.zip"
    with zipfile.ZipFile(inner, "w") as archive:
        archive.writestr("a.txt", "hidden")
    nested = make("nested.zip", [("ok.txt", "fine"), ("more/inner.zip", inner.read_bytes())])
    with pytest.raises(ArchiveRefused, match="contains another archive .*inner.zip.*nested archives are not accepted"):
        inspect_source(nested, DatasetOptions("zip"))
    disguised = make("disguised.zip", [("inner.txt", inner.read_bytes())])
    with pytest.raises(
        ArchiveRefused, match="“inner.txt” in “disguised.zip” is a zip archive: nested archives are not accepted"
    ):
        inspect_source(disguised, DatasetOptions("zip"))
    for entry, message in (
        ("../evil.txt", "leaves the archive"),
        ("docs/../../evil.txt", "leaves the archive"),
        ("/etc/passwd", "absolute path"),
        ("C:/windows/x.txt", "absolute path"),
    ):
        path = tmp_path / "escape.zip"
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr(zipfile.ZipInfo(entry), "x")
        with pytest.raises(ArchiveRefused, match=message):
            inspect_source(path, DatasetOptions("zip"))
    link = zipfile.ZipInfo("link.txt")
    link.external_attr = 0o120777 << 16
    path = tmp_path / "link.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(link, "/etc/passwd")
    with pytest.raises(ArchiveRefused, match="symbolic link"):
        inspect_source(path, DatasetOptions("zip"))
    binary_member = make("binary-member.zip", [("a.txt", "text"), ("b.txt", b"\x7fELF\x02\x01\x01\x00")])
    with pytest.raises(BinaryFileError, match="“b.txt” in “binary-member.zip” looks like a binary file"):
        read(binary_member, DatasetOptions("zip"), tmp_path)
    not_a_zip = tmp_path / "plain.zip"
    not_a_zip.write_text("just text", encoding="utf-8")
    with pytest.raises(DatasetOptionsError, match="is not a zip archive"):
        inspect_source(not_a_zip, DatasetOptions("zip"))


# --- Prompt pairs -------------------------------------------------------------------------------

GOOD_PAIR = {
    "clean": "The capital of France is",
    "corrupted": "The capital of Italy is",
    "target": " Paris",
    "distractor": " Rome",
}


def test_prompt_pairs_are_kept_whole(tmp_path):
    path = write_jsonl(
        tmp_path / "pairs.jsonl", [GOOD_PAIR, {**GOOD_PAIR, "clean": "The capital of Spain is", "target": " Madrid"}]
    )
    result, records = read(path, DatasetOptions("jsonl", role="prompt_pairs"), tmp_path)
    assert result.documents == 2
    assert records[0] == {"id": 0, "text": "The capital of France is", "source": "line 1", **GOOD_PAIR}
    assert result.preview[1]["target"] == " Madrid"


@pytest.mark.parametrize(
    "change,message",
    [
        ({"target": ""}, "line 3: “target” is empty"),
        ({"distractor": "   "}, "line 3: “distractor” is empty"),
        ({"clean": 42}, "line 3: “clean” is 42, not a string"),
        ({"corrupted": GOOD_PAIR["clean"]}, "line 3: “clean” and “corrupted” are the same prompt"),
        ({"distractor": " Paris"}, "line 3: “target” and “distractor” are the same"),
        ({"clean": None}, "line 3: “clean” is null, not a string"),
    ],
)
def test_the_first_bad_prompt_pair_is_reported_with_its_line(tmp_path, change, message):
    rows = [GOOD_PAIR, GOOD_PAIR, {**GOOD_PAIR, **change}, {**GOOD_PAIR, "target": ""}]
    path = write_jsonl(tmp_path / "pairs.jsonl", rows)
    with pytest.raises(DatasetFormatError, match=re.escape(message)):
        read(path, DatasetOptions("jsonl", role="prompt_pairs"), tmp_path)


def test_a_prompt_pair_missing_a_field(tmp_path):
    path = write_jsonl(tmp_path / "pairs.jsonl", [GOOD_PAIR, {k: v for k, v in GOOD_PAIR.items() if k != "corrupted"}])
    with pytest.raises(DatasetFormatError, match="line 2 has no “corrupted”; every line needs"):
        inspect_source(path, DatasetOptions("jsonl", role="prompt_pairs"))


# --- Preview and statistics -----------------------------------------------------------------------


def test_preview_is_the_first_20_documents_cut_to_500_characters(tmp_path):
    path = write_jsonl(tmp_path / "long.jsonl", [{"text": f"{i:03d} " + "w" * (30 * i)} for i in range(60)])
    inspection = inspect_source(path, DatasetOptions("jsonl"))
    assert len(inspection.preview) == 20 and [p["id"] for p in inspection.preview] == list(range(20))
    result, _ = read(path, DatasetOptions("jsonl"), tmp_path)
    assert result.preview == inspection.preview
    long_one = result.preview[19]
    assert len(long_one["text"]) == PREVIEW_CHARS and long_one["truncated"] and long_one["chars"] == 574
    assert not result.preview[0]["truncated"]


def test_length_histogram_buckets():
    histogram = LengthHistogram()
    for length in (1, 2, 3, 4, 7, 8, 100, 1000):
        histogram.add(length)
    stats = histogram.as_dict()
    assert (stats["count"], stats["total"], stats["min"], stats["max"]) == (8, 1125, 1, 1000)
    assert stats["mean"] == 140.6
    assert stats["buckets"][:4] == [
        {"lo": 1, "hi": 1, "count": 1},
        {"lo": 2, "hi": 3, "count": 2},
        {"lo": 4, "hi": 7, "count": 2},
        {"lo": 8, "hi": 15, "count": 1},
    ]
    assert stats["buckets"][-1] == {"lo": 512, "hi": 1023, "count": 1}
    assert sum(b["count"] for b in stats["buckets"]) == 8
    assert len(stats["buckets"]) == 10  # contiguous: the empty buckets between are there


def test_normalised_file_statistics(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("a\nbb\ncccc\n", encoding="utf-8")
    result, _ = read(path, DatasetOptions("txt"), tmp_path)
    assert (result.documents, result.characters) == (3, 7)
    assert result.lengths["buckets"] == [
        {"lo": 1, "hi": 1, "count": 1},
        {"lo": 2, "hi": 3, "count": 1},
        {"lo": 4, "hi": 7, "count": 1},
    ]


# --- Splits -----------------------------------------------------------------------------------------


def test_splits_are_a_pure_function_of_seed_and_id():
    first = [split_of(7, 0.8, i) for i in range(5000)]
    assert first == [split_of(7, 0.8, i) for i in range(5000)]
    assert first != [split_of(8, 0.8, i) for i in range(5000)]
    assert list(split_mask(7, 0.8, 5000)) == [s == "train" for s in first]
    assert list(split_mask(7, 0.8, 100, start=4900)) == [s == "train" for s in first[4900:]]
    for seed in (0, 1, 12345, 2**62):
        for ratio in (0.5, 0.8, 0.9, 0.95):
            train, eval_ = split_counts(seed, ratio, 5000)
            assert train + eval_ == 5000
            assert abs(train / 5000 - ratio) <= 0.02, (seed, ratio, train)
    with pytest.raises(ValueError, match="between 0 and 1"):
        split_counts(0, 1.0, 10)
    with pytest.raises(ValueError, match="seed"):
        split_counts(-1, 0.5, 10)


def test_read_documents_by_split(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": f"document {i}"} for i in range(300)])
    out = tmp_path / "norm.jsonl"
    normalise(path, DatasetOptions("jsonl"), out)
    train = [r["id"] for r in read_documents(out, split="train", seed=3, ratio=0.7)]
    eval_ = [r["id"] for r in read_documents(out, split="eval", seed=3, ratio=0.7)]
    assert sorted(train + eval_) == list(range(300))
    assert train == [i for i in range(300) if split_of(3, 0.7, i) == "train"]
    assert len(train) == split_counts(3, 0.7, 300)[0]


# --- Tokenizers ----------------------------------------------------------------------------------------


def tiny_tokenizer(path: Path) -> Path:
    """A word-level tokenizer.json trained here on a few sentences."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.train_from_iterator(
        ["the cat sat on the mat.", "a dog, a cat!"], trainers.WordLevelTrainer(special_tokens=["[UNK]"])
    )
    tokenizer.save(str(path))
    return path


def whitespace_pieces(text: str) -> int:
    """What the Whitespace pre-tokenizer cuts (words and runs of punctuation): the expected count."""
    return len(re.findall(r"\w+|[^\w\s]+", text))


def test_hugging_face_tokenizer_counts_tokens(tmp_path):
    tokenizer = load_tokenizer(tiny_tokenizer(tmp_path / "tokenizer.json"), "tokenizer.json")
    assert isinstance(tokenizer, HuggingFaceTokenizer)
    assert "WordLevel" in tokenizer.description
    sentences = ["the cat sat.", "unknown words count too", "a"]
    assert tokenizer.count(sentences) == [whitespace_pieces(s) for s in sentences] == [4, 4, 1]
    docs = write_jsonl(tmp_path / "d.jsonl", [{"text": s} for s in sentences * 200])
    out = tmp_path / "norm.jsonl"
    normalise(docs, DatasetOptions("jsonl"), out)
    seen = []
    counted = count_tokens(out, tokenizer, batch_size=64, progress=lambda fraction, n: seen.append(fraction))
    assert (counted.documents, counted.tokens) == (600, 1800)
    assert counted.lengths["max"] == 4 and seen[-1] == 1.0 and seen == sorted(seen)


def test_tokenizer_problems_are_explained(tmp_path):
    bad = tmp_path / "tokenizer.json"
    bad.write_text('{"not": "a tokenizer"}', encoding="utf-8")
    with pytest.raises(TokenizerError, match="is not a Hugging Face tokenizer.json"):
        load_tokenizer(bad, "tokenizer.json")
    not_gguf = tmp_path / "model.gguf"
    not_gguf.write_bytes(b"this is not a GGUF file at all")
    with pytest.raises(TokenizerError, match="llama.cpp could not read the vocabulary of “model.gguf”"):
        load_tokenizer(not_gguf, "gguf")
