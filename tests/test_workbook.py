"""The exercise as a live spreadsheet (jitprop.workbook): its layout, formulas only below the
header, charts, the same bytes from the same history, and LibreOffice Calc recalculating it to
history.csv's numbers."""

import itertools
import posixpath
import re
import subprocess
import sys
import time
import zipfile

import pandas as pd
import pytest
import yaml

from jitprop import config, toy, workbook

import libreoffice
from conftest import ROOT
from helpers import constant_cells, step_tables, table_mismatches

# history.csv's names, as the issue lists them for the step table's header.
HEADER = (
    ["step", *[f"w{k}" for k in range(1, 9)]]
    + ["h1", "out_h1", "h2", "out_h2", "o1", "out_o1", "o2", "out_o2", "E1", "E2", "E_total"]
    + [f"dE_dw{k}" for k in range(1, 9)]
)
# Beyond the default config's rates: 1e4 jumps to saturated sigmoids in one step (as in the tiny
# test config), and 1e8 drives h below -709, where e^-h overflows: NumPy gives σ = 0 there and
# a spreadsheet's EXP an error, unless the formula avoids it.
EXTRA_RATES = [10000.0, 1e8]


def write_history(directory, rates, steps):
    """history.csv as the sweep writes it, for the config's sheet start at each of `rates`,
    and one seeded run (which the workbook leaves out)."""
    setup = yaml.safe_load((ROOT / "config.yaml").read_text())["toy"]
    runs = [(lr, None) for lr in rates] + [(rates[0], 1)]
    history, _ = toy.sweep_part(
        runs, setup["weights"], setup["inputs"], setup["targets"], steps, setup["init_range"]
    )
    path = directory / "history.csv"
    path.write_text(toy.HISTORY_HEADER + "\n" + history)
    return path


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """The default config's toy learning rates and steps, and EXTRA_RATES: (history, workbook)."""
    directory = tmp_path_factory.mktemp("sweep")
    setup = yaml.safe_load((ROOT / "config.yaml").read_text())["toy"]
    path = write_history(directory, [*setup["learning_rates"], *EXTRA_RATES], setup["steps"])
    xlsx = directory / "exercise.xlsx"
    workbook.write(workbook.read_sheet_runs(path), xlsx)
    return pd.read_csv(path), xlsx


def rates_of(history):
    return sorted(history.loc[history["init"] == "sheet", "lr"].unique())


def test_one_worksheet_per_rate_after_the_overview(sweep):
    history, xlsx = sweep
    import openpyxl

    names = openpyxl.load_workbook(xlsx).sheetnames
    assert names == ["all rates", *[f"eta={lr!r}" for lr in map(float, rates_of(history))]]


def test_header_is_history_names_and_every_cell_below_is_a_formula(sweep):
    history, xlsx = sweep
    tables = step_tables(xlsx)
    assert len(tables) == len(rates_of(history))
    for name, (header, rows) in tables.items():
        assert header == HEADER, name
        assert set(header) <= set(history.columns)
        assert len(rows) == history["step"].max() + 1, name
    assert constant_cells(xlsx) == []


def test_formulas_use_only_exp_and_if_and_refer_to_cells(sweep):
    history, xlsx = sweep
    tables = step_tables(xlsx)
    assert sorted(tables) == sorted(f"eta={float(lr)!r}" for lr in rates_of(history))
    checked = 0
    for name, (header, rows) in tables.items():
        assert rows, name
        checked += len(rows) * len(header)
        for cells in rows:
            for column, cell in zip(header, cells, strict=True):
                formula = cell.value
                assert set(re.findall(r"([A-Z]+)\(", formula)) <= {"EXP", "IF"}, formula
                if (column, cell.row) != ("step", rows[0][0].row):
                    # Not a number in disguise: every formula reads another cell.
                    assert re.search(r"\$?[A-Z]+\$?[0-9]+", formula), f"{name}!{cell.coordinate}"
    assert checked == len(tables) * (history["step"].max() + 1) * len(HEADER)


def top_block(sheet):
    """{label: absolute address of its value} of the block above a rate's step table."""
    cells = {}
    for row in sheet.iter_rows(max_col=1):
        if row[0].value == "step":
            return cells
        if row[0].value is not None:
            cells[row[0].value] = f"$B${row[0].row}"
    raise AssertionError(f"{sheet.title}: no step table")


def test_weights_come_from_the_top_block_then_from_the_row_above(sweep):
    _, xlsx = sweep
    import openpyxl

    top = top_block(openpyxl.load_workbook(xlsx)["eta=0.5"])
    assert list(top)[2:] == ["i1", "i2", "t1", "t2", "η", *[f"w{k} at step 0" for k in range(1, 9)]]
    header, rows = step_tables(xlsx)["eta=0.5"]
    for k in range(1, 9):
        w, dE_dw = header.index(f"w{k}"), header.index(f"dE_dw{k}")
        assert rows[0][w].value == f"={top[f'w{k} at step 0']}"
        for above, cells in itertools.pairwise(rows):
            expected = f"={above[w].coordinate}-{top['η']}*{above[dE_dw].coordinate}"
            assert cells[w].value == expected


def charts_of(xlsx):
    """{worksheet: [chart XML]}, found through the package's relationships."""
    with zipfile.ZipFile(xlsx) as package:
        book = package.read("xl/workbook.xml").decode()
        rels = package.read("xl/_rels/workbook.xml.rels").decode()
        targets = dict(re.findall(r'Id="(rId\d+)" [^>]*Target="([^"]+)"', rels))
        sheets = re.findall(r'<sheet name="([^"]+)" sheetId="\d+" r:id="(rId\d+)"', book)
        return {name: _chart_parts(package, f"xl/{targets[rid]}") for name, rid in sheets}


def _chart_parts(package, part):
    """The chart XML reached from the package part `part` through its drawing, if any."""
    folder, file = part.rsplit("/", 1)
    rels_name = f"{folder}/_rels/{file}.rels"
    if rels_name not in package.namelist():
        return []
    found = []
    for target in re.findall(r'Target="([^"]+)"', package.read(rels_name).decode()):
        path = posixpath.normpath(f"{folder}/{target}")
        if "/charts/" in path:
            found.append(package.read(path).decode())
        elif "/drawings/" in path:
            found += _chart_parts(package, path)
    return found


def test_line_charts_of_the_total_loss(sweep):
    history, xlsx = sweep
    charts = charts_of(xlsx)
    rates = rates_of(history)
    assert list(charts) == ["all rates", *[f"eta={float(lr)!r}" for lr in rates]]
    for name, found in charts.items():
        assert len(found) == 1, name
        chart = found[0]
        assert "<c:lineChart>" in chart, name
        series = re.findall(r"<c:val><c:numRef><c:f>([^<]+)</c:f>", chart)
        if name == "all rates":
            assert len(series) == len(rates)
            assert '<c:logBase val="10"/>' in chart
        else:
            _, rows = step_tables(xlsx)[name]
            first, last = rows[0][0].row, rows[-1][0].row
            assert series == [f"'{name}'!$T${first}:$T${last}"]


def test_overview_charts_at_most_max_series_spread_over_the_rates(tmp_path, monkeypatch):
    monkeypatch.setattr(workbook, "MAX_SERIES", 3)
    rates = [0.1, 0.2, 0.5, 1.0, 2.0]
    path = write_history(tmp_path, rates, 2)
    xlsx = tmp_path / "exercise.xlsx"
    workbook.write(workbook.read_sheet_runs(path), xlsx)
    (chart,) = charts_of(xlsx)["all rates"]
    names = re.findall(r"<c:tx><c:v>([^<]+)</c:v></c:tx>", chart)
    assert names == ["η = 0.1", "η = 0.5", "η = 2"]
    assert "(3 of 5 rates)" in chart


def test_overview_lists_the_last_total_loss_of_each_rate(sweep):
    history, xlsx = sweep
    import openpyxl

    book = openpyxl.load_workbook(xlsx)
    sheet = book["all rates"]
    assert sheet["D3"].value == f"E_total at step {history['step'].max()} (last)"
    tables = step_tables(xlsx)
    for row, lr in enumerate(rates_of(history), start=4):
        name = f"eta={float(lr)!r}"
        header, rows = tables[name]
        E_total = rows[-1][header.index("E_total")].coordinate
        assert sheet[f"A{row}"].value == f"='{name}'!{top_block(book[name])['η']}"
        assert sheet[f"D{row}"].value == f"='{name}'!{E_total}"


def test_same_history_gives_the_same_bytes(tmp_path):
    path = write_history(tmp_path, [0.5, 2.0], 5)
    first, second = tmp_path / "a.xlsx", tmp_path / "b.xlsx"
    workbook.write(workbook.read_sheet_runs(path), first)
    time.sleep(1.1)  # a timestamp anywhere in the file would now differ
    workbook.write(workbook.read_sheet_runs(path), second)
    assert first.read_bytes() == second.read_bytes()
    with zipfile.ZipFile(first) as package:
        core = package.read("docProps/core.xml").decode()
    assert "1980-01-01T00:00:00Z" in core


def test_libreoffice_recalculates_the_history(sweep, tmp_path):
    history, xlsx = sweep
    computed = libreoffice.recalculated(xlsx, tmp_path)
    assert constant_cells(computed) == [], "LibreOffice turned formulas into constants"
    mismatches = table_mismatches(computed, history)
    assert mismatches == [], f"{len(mismatches)} cells differ, the first: {mismatches[:5]}"


def poisoned(xlsx, path, value="12345"):
    """A copy of `xlsx` whose formulas all cache `value` instead of their result."""
    with zipfile.ZipFile(xlsx) as source, zipfile.ZipFile(path, "w") as target:
        for item in source.infolist():
            data = source.read(item)
            if item.filename.startswith("xl/worksheets/sheet"):
                data = re.sub(rb"(</f>)<v>[^<]*</v>", rb"\1<v>" + value.encode() + b"</v>", data)
            target.writestr(item, data)
    return path


def test_recalculation_really_happens(tmp_path):
    """The check above cannot pass on cached values: from a workbook whose every formula caches
    a wrong number, Calc as the tests run it returns history.csv's numbers, while Calc with its
    default settings returns the wrong ones, which the comparison reports."""
    path = write_history(tmp_path, [0.5, 10000.0], 8)
    history = pd.read_csv(path)
    xlsx = tmp_path / "exercise.xlsx"
    workbook.write(workbook.read_sheet_runs(path), xlsx)
    wrong = poisoned(xlsx, tmp_path / "wrong.xlsx")
    cells = 2 * 8 * len(HEADER)
    assert len(table_mismatches(wrong, history)) == cells, "the poison did not take"

    assert table_mismatches(libreoffice.recalculated(wrong, tmp_path / "forced"), history) == []
    kept = libreoffice.recalculated(wrong, tmp_path / "default", recalculate=False)
    mismatches = table_mismatches(kept, history)
    assert len(mismatches) == cells
    assert {found for _, found, _ in mismatches} == {12345}


def jitprop(*args):
    return subprocess.run(
        [sys.executable, "-m", "jitprop", *map(str, args)], capture_output=True, text=True
    )


def test_cli_writes_the_workbook(tmp_path):
    write_history(tmp_path, [0.5], 3)
    result = jitprop("toy-sheet", tmp_path, "--out", tmp_path / "sheet.xlsx")
    assert result.returncode == 0, result.stderr
    assert list(step_tables(tmp_path / "sheet.xlsx")) == ["eta=0.5"]


@pytest.mark.parametrize(
    ("history", "message"),
    [
        (None, "No such file or directory"),
        ("lr,init,seed,step\n0.5,sheet,,0\n", "history.csv: missing columns i1, i2"),
        (toy.HISTORY_HEADER + "\n", "history.csv: no run from the sheet's weights"),
    ],
)
def test_bad_history_is_one_line_naming_the_file(tmp_path, history, message):
    if history is not None:
        (tmp_path / "history.csv").write_text(history)
    result = jitprop("toy-sheet", tmp_path, "--out", tmp_path / "sheet.xlsx")
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("jitprop toy-sheet")]
    assert len(errors) == 1, result.stderr
    assert message in errors[0]
    assert str(tmp_path / "history.csv") in errors[0]
    assert not (tmp_path / "sheet.xlsx").exists()


def test_the_most_steps_the_config_takes_fit_a_worksheet():
    # The schema's bound on toy.steps is what keeps toy_sheet from failing after the runs.
    steps = config.load_schema()["properties"]["toy"]["properties"]["steps"]["maximum"]
    assert workbook.FIRST_STEP_ROW + steps <= workbook.MAX_ROWS
