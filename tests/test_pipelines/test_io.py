import pandas as pd
import pytest

from leadscore.pipelines.outputs.files import neutralise_formulas, write_atomically, write_frame


def test_formula_injection_is_neutralised_in_csv(tmp_path):
    frame = pd.DataFrame({"name": ['=HYPERLINK("x")', "+1", "-2", "@SUM(A1)", "ok", None], "n": [-1, 2, 3, 4, 5, 6]})
    path = write_frame(frame, tmp_path / "out.csv")
    back = pd.read_csv(path, dtype=str, keep_default_na=False)
    assert back["name"].tolist() == ['\'=HYPERLINK("x")', "'+1", "'-2", "'@SUM(A1)", "ok", ""]
    assert back["n"].tolist() == ["-1", "2", "3", "4", "5", "6"]  # numbers stay numbers
    assert neutralise_formulas(frame)["name"].iloc[4] == "ok"


def test_a_failure_mid_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "scores.csv"
    target.write_text("old\n")

    def crash(tmp):
        tmp.write_text("half a fi")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_atomically(target, crash)
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["scores.csv"]


def test_parquet_and_unknown_suffix(tmp_path):
    frame = pd.DataFrame({"a": [1, 2]})
    pd.testing.assert_frame_equal(pd.read_parquet(write_frame(frame, tmp_path / "x.parquet")), frame)
    with pytest.raises(ValueError, match="use a .csv or .parquet"):
        write_frame(frame, tmp_path / "x.xlsx")


def test_sql_tables_are_read_in_chunks_with_ids_as_categoricals(tmp_path):
    import sqlalchemy

    from leadscore.pipelines.intake.files import read_sql_checked

    events = pd.DataFrame({"lead_id": ["a", "b", "a", "c", "b", "d", "a"], "value": [1.0, 2, 3, 4, 5, 6, 7]})
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    engine = sqlalchemy.create_engine(url)
    events.to_sql("events", engine, index=False)
    engine.dispose()
    read = read_sql_checked(url, "events", name="events", dictionary_columns=("lead_id",), chunk_rows=3)
    assert isinstance(read["lead_id"].dtype, pd.CategoricalDtype)  # values spread over three chunks, one dtype
    assert sorted(read["lead_id"].cat.categories) == ["a", "b", "c", "d"]
    pd.testing.assert_frame_equal(read.astype({"lead_id": "object"}), events.astype({"lead_id": "object"}))


def test_an_empty_sql_table_keeps_its_columns(tmp_path):
    import sqlalchemy

    from leadscore.pipelines.intake.files import read_sql_checked

    url = f"sqlite:///{tmp_path / 'crm.db'}"
    engine = sqlalchemy.create_engine(url)
    pd.DataFrame({"lead_id": pd.Series([], dtype="object"), "created_at": []}).to_sql("leads", engine, index=False)
    engine.dispose()
    read = read_sql_checked(url, "leads", name="leads", dictionary_columns=("lead_id",), chunk_rows=2)
    assert list(read.columns) == ["lead_id", "created_at"] and read.empty
