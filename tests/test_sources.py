"""Source loaders on real files: JSONL, CSV, Parquet, a saved HF dataset, SQL over a real store — and bad input.

Every bad input must be a DataError naming the file, the row and the field, never a traceback.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import RECIPES, write

from synthlang.api import check_file
from synthlang.errors import DataError
from synthlang.execute.sources import count_rows, load_source
from synthlang.store import Store


def load(tmp_path: Path, loader: str, fields: str = "question: str\n  answer: str", opts: str = "", arg: str | None = None,
         store=None):
    arg = arg if arg is not None else f'"data.{loader}"'
    write(tmp_path / "r.synth", f"source s = {loader}({arg}{opts}) {{\n  {fields}\n}}\n")
    prog = check_file(tmp_path / "r.synth")
    return load_source(prog.sources["s"], prog.params, store=store)


def jsonl(tmp_path: Path, *lines: str | bytes) -> None:
    data = b"".join((x if isinstance(x, bytes) else x.encode()) + b"\n" for x in lines)
    (tmp_path / "data.jsonl").write_bytes(data)


GOOD = '{"question": "q1", "answer": "#### 3"}'


def test_jsonl_real_gsm8k_rows_with_derived_field(tmp_path):
    src = (RECIPES / "data/gsm8k/train_first1000.jsonl").read_bytes().splitlines()[:5]
    (tmp_path / "data.jsonl").write_bytes(b"\n".join(src) + b"\n")
    rows = load(tmp_path, "jsonl", "question: str\n  answer: str\n  gold = final_number(answer)", ", limit=3")
    assert len(rows) == 3 and rows[0]["gold"] == 72 and set(rows[0]) == {"question", "answer", "gold"}


@pytest.mark.parametrize("lines, row, field, words", [
    ((GOOD, '{"question": "q2", "answer": }'), 2, None, "malformed JSON"),
    ((GOOD, '["not", "an", "object"]'), 2, None, "JSON object"),
    ((GOOD, '{"question": "q2"}'), 2, "answer", "missing field"),
    ((GOOD, '{"question": 7, "answer": "x"}'), 2, "question", "expected str, got int"),
    ((GOOD, b'{"question": "caf\xe9", "answer": "x"}'), 2, None, "not UTF-8"),
])
def test_jsonl_bad_rows_name_file_row_field(tmp_path, lines, row, field, words):
    jsonl(tmp_path, *lines)
    with pytest.raises(DataError) as ei:
        load(tmp_path, "jsonl")
    e = ei.value
    assert (e.row, e.field) == (row, field) and e.path.endswith("data.jsonl") and words in str(e)


def test_empty_and_missing_files(tmp_path):
    (tmp_path / "data.jsonl").write_bytes(b"\n\n")
    with pytest.raises(DataError, match="the source is empty: the file has no rows"):
        load(tmp_path, "jsonl")
    jsonl(tmp_path, GOOD)
    with pytest.raises(DataError, match="no rows left after offset=5"):
        load(tmp_path, "jsonl", opts=", offset=5")
    # a file deleted between check and run
    write(tmp_path / "r.synth", 'source s = jsonl("data.jsonl") { question: str }\n')
    prog = check_file(tmp_path / "r.synth")
    (tmp_path / "data.jsonl").unlink()
    with pytest.raises(DataError, match="file not found"):
        load_source(prog.sources["s"], {})


def test_field_of_megabytes_is_refused_with_its_size(tmp_path):
    jsonl(tmp_path, GOOD, json.dumps({"question": "x" * 2_000_000, "answer": "a"}))
    with pytest.raises(DataError) as ei:
        load(tmp_path, "jsonl")
    assert (ei.value.row, ei.value.field) == (2, "question") and "2,000,000 bytes" in str(ei.value)
    assert len(load(tmp_path, "jsonl", opts=", max_field_bytes=3000000")) == 2


def test_duplicate_seed_ids(tmp_path):
    jsonl(tmp_path, '{"id": 1, "question": "a"}', '{"id": 2, "question": "b"}', '{"id": 1, "question": "c"}')
    with pytest.raises(DataError) as ei:
        load(tmp_path, "jsonl", "id: int\n  question: str", ", id=id")
    assert (ei.value.row, ei.value.field) == (3, "id") and "duplicate id 1 (first seen at row 1)" in str(ei.value)
    assert len(load(tmp_path, "jsonl", "id: int\n  question: str")) == 3  # without id= duplicates are allowed


def test_csv_real_banking77_and_bad_cells(tmp_path):
    rows = (RECIPES / "data/banking77/test.csv").read_text(encoding="utf-8").splitlines()[:4]
    write(tmp_path / "data.csv", "\n".join(rows) + "\n")
    got = load(tmp_path, "csv", "text: str\n  category: str")
    assert len(got) == 3 and got[0]["text"]
    write(tmp_path / "data.csv", "question,n\nq1,3\nq2,three\n")
    with pytest.raises(DataError) as ei:
        load(tmp_path, "csv", "question: str\n  n: int")
    assert (ei.value.row, ei.value.field) == (3, "n") and "expected int, got 'three'" in str(ei.value)
    write(tmp_path / "data.csv", "question,n\nq1,3,extra\n")
    with pytest.raises(DataError, match="3 cells but the header has 2 columns") as ei:
        load(tmp_path, "csv", "question: str\n  n: int")
    assert ei.value.row == 2
    (tmp_path / "data.csv").write_bytes(b"question,n\nq1,3\nq\xff,4\n")
    with pytest.raises(DataError, match="not UTF-8") as ei:
        load(tmp_path, "csv", "question: str\n  n: int")
    assert ei.value.row == 3
    write(tmp_path / "data.csv", "question\nq1\n")
    with pytest.raises(DataError, match="no column 'n'") as ei:
        load(tmp_path, "csv", "question: str\n  n: int")
    assert ei.value.field == "n"


def test_parquet_rows_types_and_bad_files(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"question": ["a", "b", "c"], "score": [1, 2, 3], "extra": [0.5, 0.1, 0.2]}), tmp_path / "data.parquet")
    rows = load(tmp_path, "parquet", "question: str\n  score: int\n  double = score * 2", ", offset=1")
    assert rows == [{"question": "b", "score": 2, "double": 4}, {"question": "c", "score": 3, "double": 6}]
    with pytest.raises(DataError) as ei:
        load(tmp_path, "parquet", "question: int")
    assert (ei.value.row, ei.value.field) == (1, "question") and "expected int, got str" in str(ei.value)
    with pytest.raises(DataError, match="no column 'answer'"):
        load(tmp_path, "parquet", "answer: str")
    (tmp_path / "data.parquet").write_bytes(b"PAR1 this is not parquet at all")
    with pytest.raises(DataError, match="not a readable Parquet file"):
        load(tmp_path, "parquet", "question: str")


def test_hf_saved_dataset_and_splits(tmp_path):
    import datasets

    d = datasets.Dataset.from_dict({"question": ["q1", "q2"], "label": [0, 1]})
    datasets.DatasetDict({"train": d, "test": d.select([0])}).save_to_disk(str(tmp_path / "ds"))
    rows = load(tmp_path, "hf", "question: str\n  label: int", ', split="test"', arg='"ds"')
    assert rows == [{"question": "q1", "label": 0}]
    with pytest.raises(DataError, match="pick one with split="):
        load(tmp_path, "hf", "question: str", arg='"ds"')
    with pytest.raises(DataError, match="no split 'dev'"):
        load(tmp_path, "hf", "question: str", ', split="dev"', arg='"ds"')
    (tmp_path / "notds").mkdir()
    with pytest.raises(DataError, match="not a dataset saved with save_to_disk"):
        load(tmp_path, "hf", "question: str", arg='"notds"')


def test_sql_over_a_real_store(tmp_path):
    db = tmp_path / "runs.duckdb"
    with Store(db) as st:
        st.write_rows("run1", "answered", [
            {"row_id": f"r{i}", "parents": (), "data": {"question": f"q{i}", "score": i}, "step_fingerprint": "fp",
             "operator": "answer"} for i in range(4)])
        query = "SELECT data->>'question' AS question, data->>'score' AS score FROM rows WHERE step='answered' ORDER BY 1"
        rows = load(tmp_path, "sql", "question: str\n  score: int", arg=json.dumps(query), store=st)
        assert rows[0] == {"question": "q0", "score": 0} and len(rows) == 4
        write(tmp_path / "r.synth", f"source s = sql({json.dumps(query)}, limit=2) {{ question: str }}\n")
        assert count_rows(check_file(tmp_path / "r.synth").sources["s"], st) == 2
        with pytest.raises(DataError, match="SQL error"):
            load(tmp_path, "sql", "question: str", arg='"SELECT nope FROM rows"', store=st)
        with pytest.raises(DataError, match="no column 'answer'"):
            load(tmp_path, "sql", "answer: str", arg=json.dumps(query), store=st)
    # db= names the file, relative to the recipe; opened read-only
    rows = load(tmp_path, "sql", "question: str", opts=', db="runs.duckdb"', arg=json.dumps(query))
    assert len(rows) == 4


# ---------------------------------------------------------------- issue 11 items 8, 10, 16
@pytest.mark.parametrize("line, field", [
    ('{"question": "\\ud800", "answer": "x"}', "question"),
    ('{"question": "ok", "answer": ["a", "b\\udfff"]}', "answer"),
    ('{"question": "ok", "answer": {"k": "\\uDC00"}}', "answer"),
])
def test_jsonl_lone_surrogate_is_a_positioned_data_error(tmp_path, line, field):
    jsonl(tmp_path, GOOD, line)
    with pytest.raises(DataError) as ei:
        load(tmp_path, "jsonl")
    e = ei.value
    assert (e.row, e.field) == (2, field) and "lone UTF-16 surrogate" in str(e)


def test_jsonl_surrogate_pair_is_text(tmp_path):
    jsonl(tmp_path, '{"question": "smile \\ud83d\\ude00", "answer": "x"}')
    assert load(tmp_path, "jsonl")[0]["question"] == "smile \U0001F600"


def test_jsonl_with_a_byte_order_mark_is_accepted(tmp_path):
    src = (RECIPES / "data/gsm8k/train_first1000.jsonl").read_bytes().splitlines()[:3]
    (tmp_path / "data.jsonl").write_bytes(b"\xef\xbb\xbf" + b"\n".join(src) + b"\n")
    rows = load(tmp_path, "jsonl")
    assert len(rows) == 3 and rows[0]["question"].startswith("Natalia")


@pytest.mark.parametrize("text, row, field, words", [
    ("question,answer\nq1,a1\nq2\n", 3, None, "short row: 1 cells but the header has 2 columns"),
    ("question,answer\nq1,a1\nq2,a2,extra\n", 3, None, "3 cells but the header has 2 columns"),
    ('question,answer\nq1,a1\n"q2,a2\nq3,a3\nq4,a4\n', 3, None, "unclosed quote"),
    ("question,answer,question\nq1,a1,q1b\n", 1, "question", "duplicate column 'question'"),
])
def test_csv_short_rows_unclosed_quotes_and_duplicate_headers_are_errors(tmp_path, text, row, field, words):
    (tmp_path / "data.csv").write_text(text, encoding="utf-8")
    with pytest.raises(DataError) as ei:
        load(tmp_path, "csv")
    e = ei.value
    assert (e.row, e.field) == (row, field) and words in str(e), str(e)


def test_csv_quoted_multiline_cells_and_blank_lines_still_load(tmp_path):
    (tmp_path / "data.csv").write_text('question,answer\n"line one\nline two",a1\n\nq2,"a, 2"\n', encoding="utf-8")
    rows = load(tmp_path, "csv")
    assert rows == [{"question": "line one\nline two", "answer": "a1"}, {"question": "q2", "answer": "a, 2"}]
