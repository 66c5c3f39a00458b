

def test_eval_cases_export_is_listed_as_a_kind():
    from console.api.export import EXPORTS

    assert "eval_cases" in EXPORTS
    rows_for, columns = EXPORTS["eval_cases"]
    assert "expected" in " ".join(columns) or columns, "eval cases have CSV columns"
